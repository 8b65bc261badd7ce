//! One participant's recording file: VP8 video and Opus audio remuxed into WebM as the
//! frames arrive. Every packet is pushed to the operating system at once and clusters
//! are closed every second, so after `kill -9` the file plays up to its last second.
//! ffmpeg is blocking: callers run these on a blocking thread, never on the async ones.

use std::path::Path;

use ffmpeg::codec::{self, Id};
use ffmpeg::format::{self, Pixel, Sample, sample};
use ffmpeg::{ChannelLayout, Dictionary, Packet, Rational};
use ffmpeg_next as ffmpeg;

/// Why a recording file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// ffmpeg refused (a full disk shows up here too).
    #[error("ffmpeg: {0}")]
    Ffmpeg(#[from] ffmpeg::Error),
    /// This ffmpeg lacks an encoder the file's stream description needs.
    #[error("ffmpeg has no {0} support")]
    Missing(&'static str),
    /// A packet for a stream the file does not have.
    #[error("the file has no {0:?} stream")]
    NoStream(TrackKind),
    /// The file could not be created.
    #[error("cannot create the file: {0}")]
    Io(#[from] std::io::Error),
}

/// Which stream of the file a packet belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    Video,
    Audio,
}

/// Sets ffmpeg up once; its own log is kept to errors (the encoders opened only to
/// describe streams would otherwise chatter on stderr).
fn init() -> Result<(), ffmpeg::Error> {
    ffmpeg::init()?;
    ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Error);
    Ok(())
}

/// Timestamps given to [`ParticipantFile::write`] are microseconds.
const MICROS: Rational = Rational(1, 1_000_000);

/// An open recording file.
pub struct ParticipantFile {
    output: format::context::Output,
    video: Option<usize>,
    audio: Option<usize>,
    finished: bool,
}

impl ParticipantFile {
    /// Creates `path` with a VP8 video stream of `video` size (if any) and a 48 kHz mono
    /// Opus audio stream (if `audio`).
    pub fn create(path: &Path, video: Option<(u32, u32)>, audio: bool) -> Result<ParticipantFile, RecordingError> {
        init()?;
        crate::files::private_file(path)?;
        let mut output = format::output_as(path, "webm")?;
        let mut video_index = None;
        let mut audio_index = None;
        if let Some((width, height)) = video {
            // The stream description comes from an encoder set up as the browser's was;
            // nothing is ever encoded with it.
            let vp8 = ffmpeg::encoder::find(Id::VP8).ok_or(RecordingError::Missing("VP8"))?;
            let mut encoder = codec::Context::new_with_codec(vp8).encoder().video()?;
            encoder.set_width(width);
            encoder.set_height(height);
            encoder.set_format(Pixel::YUV420P);
            encoder.set_time_base(Rational(1, 1000));
            encoder.set_bit_rate(600_000);
            let encoder = encoder.open_as(vp8)?;
            let mut stream = output.add_stream_with(&encoder)?;
            stream.set_time_base(Rational(1, 1000));
            video_index = Some(stream.index());
        }
        if audio {
            let opus = ffmpeg::encoder::find(Id::OPUS).ok_or(RecordingError::Missing("Opus"))?;
            let mut encoder = codec::Context::new_with_codec(opus).encoder().audio()?;
            encoder.set_rate(48_000);
            // FFmpeg before 7 wants both the layout and the channel count.
            encoder.set_channel_layout(ChannelLayout::MONO);
            encoder.set_channels(1);
            encoder.set_format(Sample::F32(sample::Type::Packed));
            encoder.set_time_base(Rational(1, 48_000));
            encoder.set_bit_rate(32_000);
            // The Opus header (CodecPrivate) comes from the opened encoder.
            let encoder = encoder.open_as(opus)?;
            let mut stream = output.add_stream_with(&encoder)?;
            stream.set_time_base(Rational(1, 1000));
            audio_index = Some(stream.index());
        }
        let mut options = Dictionary::new();
        // Push every packet to the OS at once and close a cluster every second: what
        // reached the disk is a playable file. (The muxer fills in the segment size and
        // duration at the end; a file cut off before that says "unknown", which players
        // accept and `repair` completes.)
        options.set("flush_packets", "1");
        options.set("cluster_time_limit", "1000");
        output.write_header_with(options)?;
        Ok(ParticipantFile { output, video: video_index, audio: audio_index, finished: false })
    }

    /// Appends one encoded frame (as the browser produced it) at `timestamp_us`.
    pub fn write(
        &mut self,
        kind: TrackKind,
        timestamp_us: i64,
        keyframe: bool,
        data: &[u8],
    ) -> Result<(), RecordingError> {
        let index = match kind {
            TrackKind::Video => self.video,
            TrackKind::Audio => self.audio,
        }
        .ok_or(RecordingError::NoStream(kind))?;
        let time_base = self.output.stream(index).map(|s| s.time_base()).unwrap_or(Rational(1, 1000));
        let mut packet = Packet::copy(data);
        packet.set_stream(index);
        packet.set_pts(Some(timestamp_us));
        packet.set_dts(Some(timestamp_us));
        if keyframe {
            packet.set_flags(codec::packet::Flags::KEY);
        }
        packet.rescale_ts(MICROS, time_base);
        packet.write(&mut self.output)?;
        Ok(())
    }

    /// Writes the index and duration: the file is complete.
    pub fn finish(mut self) -> Result<(), RecordingError> {
        self.finished = true;
        self.output.write_trailer()?;
        Ok(())
    }
}

impl Drop for ParticipantFile {
    fn drop(&mut self) {
        if !self.finished {
            // Leaving without a trailer is what a crash does; the data is on disk already.
            tracing::warn!("recording file dropped without being finished; repair() will close it");
        }
    }
}

/// Rewrites a recording left without its end (the server was killed) into `fixed`: the
/// same packets, with a proper index and duration. Returns the duration in seconds.
pub fn repair(broken: &Path, fixed: &Path) -> Result<f64, RecordingError> {
    init()?;
    let mut input = format::input(broken)?;
    crate::files::private_file(fixed)?;
    let mut output = format::output_as(fixed, "webm")?;
    let mut map = Vec::new();
    for stream in input.streams() {
        let mut out = output.add_stream(ffmpeg::encoder::find(codec::Id::None))?;
        out.set_parameters(stream.parameters());
        out.set_time_base(stream.time_base());
        map.push((stream.index(), out.index(), stream.time_base()));
    }
    output.write_header()?;
    let mut last = 0.0f64;
    for (stream, mut packet) in input.packets() {
        let Some(&(_, out_index, in_base)) = map.iter().find(|(i, _, _)| *i == stream.index()) else { continue };
        let out_base = output.stream(out_index).map(|s| s.time_base()).unwrap_or(in_base);
        if let Some(pts) = packet.pts() {
            last = last.max(pts as f64 * f64::from(in_base));
        }
        packet.rescale_ts(in_base, out_base);
        packet.set_stream(out_index);
        packet.set_position(-1);
        packet.write_interleaved(&mut output)?;
    }
    output.write_trailer()?;
    Ok(last)
}
