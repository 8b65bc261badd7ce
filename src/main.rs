//! The `floo` binary: parse the configuration, start logging, run the app until Ctrl-C
//! or SIGTERM.

use clap::Parser;
use floo::config::{Cli, Command, LogFormat};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Logs go to stderr; stdout carries only the "running at" line scripts look for. The
    // latest warnings are also kept for the ops dashboard.
    let filter = EnvFilter::try_from_env("FLOO_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter).with(floo::metrics::RecentWarnings);
    match cli.log_format {
        LogFormat::Text => registry.with(lines).init(),
        LogFormat::Json => {
            registry.with(lines.json().flatten_event(true).with_current_span(true).with_span_list(false)).init()
        }
    }
    match cli.command {
        Command::Serve(config) => {
            let app = floo::App::build(*config).await?;
            tracing::info!(address = %app.public_url(), "Floo is running: open {} in your browser", app.public_url());
            println!("Floo is running at {}", app.public_url());
            let (stop, stopped) = watch::channel(false);
            tokio::spawn(async move {
                shutdown_signal().await;
                tracing::info!("shutting down");
                let _ = stop.send(true);
            });
            app.run(stopped).await
        }
        Command::Admin(args) => floo::admin::run(args).await,
        Command::Backup(args) => {
            let mut say = |line: &str| eprintln!("backup: {line}");
            floo::backup::backup(&args.location(), &args.dir, &mut say).await?;
            println!("Backed up into {}", args.dir.display());
            Ok(())
        }
        Command::Restore(args) => {
            let mut say = |line: &str| eprintln!("restore: {line}");
            let manifest = floo::backup::restore(&args.dir, &args.location(), &mut say).await?;
            println!(
                "Restored the backup of {} (Floo {}, schema {}) into {}",
                floo::clock::format_utc(manifest.created_at_ms),
                manifest.floo_version,
                manifest.schema_version,
                args.data_dir.display()
            );
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
