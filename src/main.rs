//! The `floo` binary: parse the configuration, start logging, run the app until Ctrl-C
//! or SIGTERM.

use clap::Parser;
use floo::config::{Cli, Command};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Logs go to stderr; stdout carries only the "running at" line scripts look for.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(EnvFilter::try_from_env("FLOO_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")))
        .init();
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
