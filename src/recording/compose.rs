//! Composition: the participant files of a recording become one MP4 of the meeting
//! (H.264 + AAC, `faststart`, so that every browser plays it). Video is a grid of the
//! people present at each moment, with the screen share large while it is on; a
//! participant whose camera is off is shown as a card with their name. Audio is every
//! voice mixed. All files share the recorder's clock, so they stay in sync however
//! people joined, left, muted or turned their camera off; pictures are shown at their
//! timestamps and each voice is steered to its timestamps ([`super::steer`]), so a
//! microphone whose sample clock is off does not pull the voice away from the lips.
//!
//! The work is ffmpeg's and blocks: callers run [`compose`] on a blocking thread.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ffmpeg::codec::{self, Id};
use ffmpeg::format::{self, Pixel, Sample, sample};
use ffmpeg::software::scaling;
use ffmpeg::util::frame;
use ffmpeg::{ChannelLayout, Dictionary, Packet, Rational};
use ffmpeg_next as ffmpeg;

use super::glyphs::GLYPHS;
use super::names::{Coverage, NameFonts};
use super::steer::AudioSteer;

/// One input of a composition: a participant's camera and voice, or a screen share.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub path: PathBuf,
    pub screen: bool,
}

/// How the composed video is encoded.
#[derive(Debug, Clone)]
pub struct Settings {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// x264's speed preset (`ultrafast` … `veryslow`).
    pub preset: String,
    /// Threads the encoder may use; 1 keeps a composition to one core.
    pub threads: u32,
    /// The longest video to make, whatever timestamps the files claim (a damaged file
    /// must not turn a minute of meeting into hours of video).
    pub max_duration_ms: Option<i64>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { width: 1280, height: 720, fps: 25, preset: "superfast".into(), threads: 1, max_duration_ms: None }
    }
}

/// What a finished composition holds.
#[derive(Debug, Clone, Copy)]
pub struct Composed {
    pub duration_ms: i64,
}

/// Why a composition failed. The text is shown to the team as the recording's reason.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("ffmpeg: {0}")]
    Ffmpeg(#[from] ffmpeg::Error),
    #[error("cannot read {name}'s file: {error}")]
    Input { name: String, error: ffmpeg::Error },
    #[error("this ffmpeg has no {0} encoder")]
    Missing(&'static str),
    #[error("no participant file holds any audio or video")]
    Empty,
    #[error("cancelled")]
    Cancelled,
    #[error("cannot create the file: {0}")]
    Io(#[from] std::io::Error),
}

const AUDIO_RATE: i64 = super::steer::RATE;
/// Samples per AAC frame.
const AAC_FRAME: usize = 1024;
/// A camera with no new picture for this long is shown as a name card.
const CAMERA_STALE_MS: i64 = 1_000;
/// A screen share with no new picture for this long has ended.
const SCREEN_STALE_MS: i64 = 2_500;
/// How far ahead of the composition one stream of a file is read while waiting for the
/// other to catch up.
const READ_AHEAD_MS: i64 = 2_000;
/// Decoded frames waiting to be shown, per source: a bound on memory whatever the file says.
const MAX_QUEUED_FRAMES: usize = 90;

const BACKGROUND_Y: u8 = 24;
const CARD_Y: u8 = 52;
const TEXT_Y: u8 = 235;
const NEUTRAL_UV: u8 = 128;

/// Composes `sources` into an MP4 at `output`. `progress` gets the fraction done and
/// returns false to cancel.
pub fn compose(
    sources: &[Source],
    output: &Path,
    settings: &Settings,
    progress: &mut dyn FnMut(f64) -> bool,
) -> Result<Composed, ComposeError> {
    ffmpeg::init()?;
    ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Error);
    let mut tracks = Vec::with_capacity(sources.len());
    for source in sources {
        if let Some(track) = Track::open(source)? {
            tracks.push(track);
        }
    }
    let end_ms = tracks.iter().map(|t| t.last_ms).max().ok_or(ComposeError::Empty)?;
    let duration_ms =
        (end_ms + 1000 / i64::from(settings.fps.max(1))).min(settings.max_duration_ms.unwrap_or(i64::MAX));

    let mut out = Output::create(output, settings)?;
    let mut canvas = Canvas::new(settings.width, settings.height, NameFonts::installed());
    let mut scalers = Scalers::default();
    let fps = i64::from(settings.fps.max(1));
    let (mut frame_no, mut sample_no) = (0i64, 0i64);
    let total_samples = duration_ms * AUDIO_RATE / 1000;
    let total_frames = duration_ms * fps / 1000;
    let mut mix = vec![0f32; AAC_FRAME];
    while frame_no < total_frames || sample_no < total_samples {
        let video_ms = frame_no * 1000 / fps;
        let audio_ms = sample_no * 1000 / AUDIO_RATE;
        if frame_no < total_frames && (video_ms <= audio_ms || sample_no >= total_samples) {
            for track in &mut tracks {
                track.advance_video(video_ms)?;
            }
            canvas.draw(&tracks, video_ms, &mut scalers)?;
            out.video_frame(&mut canvas.frame, frame_no)?;
            frame_no += 1;
            if !progress(video_ms as f64 / duration_ms as f64) {
                return Err(ComposeError::Cancelled);
            }
        } else {
            let until_ms = (sample_no + AAC_FRAME as i64) * 1000 / AUDIO_RATE + 1;
            mix.fill(0.0);
            for track in &mut tracks {
                track.fill(until_ms)?;
                track.mix_into(sample_no, &mut mix);
            }
            for s in &mut mix {
                *s = s.clamp(-1.0, 1.0);
            }
            out.audio_frame(&mix, sample_no)?;
            sample_no += AAC_FRAME as i64;
        }
    }
    out.finish()?;
    Ok(Composed { duration_ms })
}

/// Time in milliseconds of `ts` in `base`, never before the recording's start.
fn to_ms(ts: i64, base: Rational) -> i64 {
    let ms = i128::from(ts) * 1000 * i128::from(base.numerator()) / i128::from(base.denominator().max(1));
    i64::try_from(ms).unwrap_or(0).max(0)
}

/// A source being read: its decoders, decoded pictures waiting for their time, and
/// decoded audio waiting to be mixed.
struct Track {
    name: String,
    screen: bool,
    input: format::context::Input,
    video: Option<(usize, Rational, ffmpeg::decoder::Video)>,
    audio: Option<(usize, Rational, ffmpeg::decoder::Audio)>,
    /// The first and last moment the file holds anything: the participant was present.
    first_ms: i64,
    last_ms: i64,
    /// Time of the latest packet read, of any stream and of video and audio: everything up
    /// to them is decoded.
    read_ms: i64,
    stream_read_ms: [i64; 2],
    eof: bool,
    pending: VecDeque<(i64, frame::Video)>,
    shown: Option<(i64, frame::Video)>,
    /// Mono 48 kHz chunks: (first sample's index on the recording's clock, samples).
    chunks: VecDeque<(i64, Vec<f32>)>,
    /// Where the audio goes: its timestamps rule (see [`AudioSteer`]).
    steer: AudioSteer,
}

impl Track {
    /// Opens a source; None if it holds nothing at all.
    fn open(source: &Source) -> Result<Option<Track>, ComposeError> {
        let failed = |error| ComposeError::Input { name: source.name.clone(), error };
        // First pass, packets only: when was this participant there?
        let mut scan = format::input(&source.path).map_err(failed)?;
        let mut span: Option<(i64, i64)> = None;
        let bases: Vec<Rational> = scan.streams().map(|s| s.time_base()).collect();
        let mut packet = Packet::empty();
        loop {
            match packet.read(&mut scan) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => break,
                Err(error) => return Err(failed(error)),
            }
            let Some(pts) = packet.pts().or(packet.dts()) else { continue };
            let ms = to_ms(pts, bases.get(packet.stream()).copied().unwrap_or(Rational(1, 1000)));
            span = Some(span.map_or((ms, ms), |(a, b)| (a.min(ms), b.max(ms))));
        }
        let Some((first_ms, last_ms)) = span else { return Ok(None) };

        let input = format::input(&source.path).map_err(failed)?;
        let mut video = None;
        let mut audio = None;
        for stream in input.streams() {
            let context = codec::context::Context::from_parameters(stream.parameters()).map_err(failed)?;
            match stream.parameters().medium() {
                ffmpeg::media::Type::Video if video.is_none() => {
                    video = Some((stream.index(), stream.time_base(), context.decoder().video().map_err(failed)?));
                }
                ffmpeg::media::Type::Audio if audio.is_none() && !source.screen => {
                    audio = Some((stream.index(), stream.time_base(), context.decoder().audio().map_err(failed)?));
                }
                _ => {}
            }
        }
        Ok(Some(Track {
            name: source.name.clone(),
            screen: source.screen,
            input,
            video,
            audio,
            first_ms,
            last_ms,
            read_ms: -1,
            stream_read_ms: [-1; 2],
            eof: false,
            pending: VecDeque::new(),
            shown: None,
            chunks: VecDeque::new(),
            steer: AudioSteer::default(),
        }))
    }

    /// Whether packets up to `until_ms` may still be unread. A file's streams need not be
    /// interleaved by time (the recorder writes each stream in order, but a participant's
    /// audio may reach it well after their pictures), so reading goes on until every stream
    /// has passed `until_ms`, or until [`READ_AHEAD_MS`] past it (a stream that stopped,
    /// such as a camera turned off).
    fn behind(&self, until_ms: i64) -> bool {
        if self.eof || self.read_ms > until_ms + READ_AHEAD_MS {
            return false;
        }
        let video_behind = self.video.is_some() && self.stream_read_ms[0] <= until_ms;
        let audio_behind = self.audio.is_some() && self.stream_read_ms[1] <= until_ms;
        self.read_ms <= until_ms || video_behind || audio_behind
    }

    /// Reads and decodes packets until one past `until_ms` (or the end).
    fn fill(&mut self, until_ms: i64) -> Result<(), ComposeError> {
        let mut packet = Packet::empty();
        while self.behind(until_ms) {
            match packet.read(&mut self.input) {
                Ok(()) => {}
                // A file cut off mid-packet ends there: what came before still counts.
                Err(_) => {
                    self.eof = true;
                    break;
                }
            }
            let index = packet.stream();
            let (base, which) = match (&self.video, &self.audio) {
                (Some((stream, base, _)), _) if *stream == index => (*base, 0),
                (_, Some((stream, base, _))) if *stream == index => (*base, 1),
                _ => continue,
            };
            if let Some(pts) = packet.pts() {
                let ms = to_ms(pts, base);
                self.read_ms = self.read_ms.max(ms);
                self.stream_read_ms[which] = self.stream_read_ms[which].max(ms);
            }
            if let Some((stream, _, decoder)) = self.video.as_mut()
                && *stream == index
            {
                // A damaged packet costs its picture, not the composition.
                if decoder.send_packet(&packet).is_err() {
                    continue;
                }
                let mut decoded = frame::Video::empty();
                while decoder.receive_frame(&mut decoded).is_ok() {
                    let at = decoded.timestamp().or(decoded.pts()).map_or(self.read_ms, |ts| to_ms(ts, base));
                    if self.pending.len() >= MAX_QUEUED_FRAMES {
                        self.pending.pop_front();
                    }
                    self.pending.push_back((at, std::mem::replace(&mut decoded, frame::Video::empty())));
                }
            } else if let Some((_, _, decoder)) = self.audio.as_mut() {
                if decoder.send_packet(&packet).is_err() {
                    continue;
                }
                let mut decoded = frame::Audio::empty();
                while decoder.receive_frame(&mut decoded).is_ok() {
                    let at = decoded.timestamp().or(decoded.pts()).map_or(self.read_ms, |ts| to_ms(ts, base));
                    let samples = mono_48k(&decoded);
                    if samples.is_empty() {
                        continue;
                    }
                    if let Some(placed) = self.steer.place(at * AUDIO_RATE / 1000, &samples) {
                        self.chunks.push_back(placed);
                    }
                }
            }
        }
        Ok(())
    }

    /// Brings the picture shown at `at_ms` up to date.
    fn advance_video(&mut self, at_ms: i64) -> Result<(), ComposeError> {
        self.fill(at_ms)?;
        while self.pending.front().is_some_and(|(t, _)| *t <= at_ms) {
            self.shown = self.pending.pop_front();
        }
        Ok(())
    }

    /// Adds this track's audio for samples `[start, start + out.len())` into `out`, and
    /// forgets what lies before the end of that block.
    fn mix_into(&mut self, start: i64, out: &mut [f32]) {
        let end = start + out.len() as i64;
        for (at, samples) in &self.chunks {
            let chunk_end = at + samples.len() as i64;
            if chunk_end <= start || *at >= end {
                continue;
            }
            let from = start.max(*at);
            let to = end.min(chunk_end);
            for i in from..to {
                out[(i - start) as usize] += samples[(i - at) as usize];
            }
        }
        while self.chunks.front().is_some_and(|(at, s)| at + s.len() as i64 <= end) {
            self.chunks.pop_front();
        }
    }

    /// Whether the participant is in the meeting at `at_ms`.
    fn present(&self, at_ms: i64) -> bool {
        at_ms >= self.first_ms && at_ms <= self.last_ms + 500
    }

    /// The picture to show at `at_ms`, if it is recent enough to be live.
    fn live_picture(&self, at_ms: i64, stale_ms: i64) -> Option<&frame::Video> {
        self.shown.as_ref().filter(|(t, _)| at_ms - *t <= stale_ms).map(|(_, f)| f)
    }
}

/// A decoded audio frame as mono 48 kHz float samples (channels averaged). Other rates
/// are not produced by the recorder (Opus decodes at 48 kHz); they are skipped.
fn mono_48k(frame: &frame::Audio) -> Vec<f32> {
    let n = frame.samples();
    let channels = usize::from(frame.channels().max(1));
    if frame.rate() != AUDIO_RATE as u32 || n == 0 {
        return Vec::new();
    }
    let sample_at = |plane: usize, index: usize| -> f32 {
        match frame.format() {
            Sample::F32(_) => {
                let bytes = &frame.data(plane)[index * 4..index * 4 + 4];
                f32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
            }
            Sample::I16(_) => {
                let bytes = &frame.data(plane)[index * 2..index * 2 + 2];
                f32::from(i16::from_ne_bytes([bytes[0], bytes[1]])) / 32768.0
            }
            _ => 0.0,
        }
    };
    let planar = frame.is_planar();
    (0..n)
        .map(|i| {
            let sum: f32 =
                (0..channels).map(|c| if planar { sample_at(c, i) } else { sample_at(0, i * channels + c) }).sum();
            sum / channels as f32
        })
        .collect()
}

/// A rectangle of the picture, in pixels (even, for 4:2:0 chroma).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

fn even(v: u32) -> u32 {
    v & !1
}

/// Where the tiles go on a `width`×`height` picture for `cameras` people, with a screen
/// share or not: a grid of 16:9 tiles when nobody shares, else the screen on the left
/// three quarters and the people in a column on the right.
pub fn layout(width: u32, height: u32, cameras: usize, screen: bool) -> (Option<Rect>, Vec<Rect>) {
    let gap = 8;
    if screen {
        let strip_w = if cameras == 0 { 0 } else { width / 4 };
        let screen_rect = Rect { x: 0, y: 0, w: even(width - strip_w), h: even(height) };
        if cameras == 0 {
            return (Some(screen_rect), Vec::new());
        }
        let n = cameras as u32;
        let tile_w = strip_w.saturating_sub(gap);
        let tile_h = (tile_w * 9 / 16).min(height.saturating_sub((n - 1) * gap) / n);
        let tile_w = tile_w.min(tile_h * 16 / 9);
        let top = height.saturating_sub(n * tile_h + (n - 1) * gap) / 2;
        let tiles = (0..n)
            .map(|i| Rect {
                x: even(width - strip_w + (strip_w - tile_w) / 2),
                y: even(top + i * (tile_h + gap)),
                w: even(tile_w).max(2),
                h: even(tile_h).max(2),
            })
            .collect();
        return (Some(screen_rect), tiles);
    }
    if cameras == 0 {
        return (None, Vec::new());
    }
    let n = cameras as u32;
    // The column count that makes tiles largest.
    let (mut best, mut best_w) = (1, 0);
    for cols in 1..=n {
        let rows = n.div_ceil(cols);
        let cell_w = width / cols;
        let cell_h = height / rows;
        let w = (cell_w.saturating_sub(gap)).min(cell_h.saturating_sub(gap) * 16 / 9);
        if w > best_w {
            (best, best_w) = (cols, w);
        }
    }
    let cols = best;
    let rows = n.div_ceil(cols);
    let tile_w = best_w;
    let tile_h = tile_w * 9 / 16;
    let top = height.saturating_sub(rows * tile_h + (rows - 1) * gap) / 2;
    let mut tiles = Vec::with_capacity(cameras);
    for i in 0..n {
        let (row, col) = (i / cols, i % cols);
        // The last row is centred when it is not full.
        let in_row = if row == rows - 1 { n - row * cols } else { cols };
        let left = width.saturating_sub(in_row * tile_w + (in_row - 1) * gap) / 2;
        tiles.push(Rect {
            x: even(left + col * (tile_w + gap)),
            y: even(top + row * (tile_h + gap)),
            w: even(tile_w).max(2),
            h: even(tile_h).max(2),
        });
    }
    (None, tiles)
}

type ScaleKey = (Pixel, u32, u32, u32, u32);

/// Scaling contexts by (source format and size, target size): sizes change rarely, so a
/// short list searched in order does.
#[derive(Default)]
struct Scalers {
    contexts: Vec<(ScaleKey, scaling::Context, frame::Video)>,
}

impl Scalers {
    fn scale(&mut self, src: &frame::Video, w: u32, h: u32) -> Result<&frame::Video, ComposeError> {
        let key = (src.format(), src.width(), src.height(), w, h);
        let index = match self.contexts.iter().position(|(k, _, _)| *k == key) {
            Some(index) => index,
            None => {
                if self.contexts.len() >= 32 {
                    self.contexts.clear();
                }
                let context = scaling::Context::get(
                    src.format(),
                    src.width(),
                    src.height(),
                    Pixel::YUV420P,
                    w,
                    h,
                    scaling::Flags::FAST_BILINEAR,
                )?;
                self.contexts.push((key, context, frame::Video::new(Pixel::YUV420P, w, h)));
                self.contexts.len() - 1
            }
        };
        let (_, context, out) = &mut self.contexts[index];
        context.run(src, out)?;
        Ok(out)
    }
}

/// The picture being composed.
struct Canvas {
    frame: frame::Video,
    fonts: NameFonts,
    /// Each name at each size, rasterised once (names do not change during a meeting).
    names: HashMap<(String, u32), Option<Rc<Coverage>>>,
}

impl Canvas {
    fn new(width: u32, height: u32, fonts: NameFonts) -> Canvas {
        if fonts.is_empty() {
            tracing::warn!(
                "no font for names found (Debian: fonts-dejavu-core, fonts-droid-fallback); \
                 names outside Latin-1 show as question marks"
            );
        }
        Canvas { frame: frame::Video::new(Pixel::YUV420P, width, height), fonts, names: HashMap::new() }
    }

    /// `name` rasterised `px` pixels high (None without fonts: the bitmap is used).
    fn rendered(&mut self, name: &str, px: u32) -> Option<Rc<Coverage>> {
        let fonts = &self.fonts;
        self.names.entry((name.to_owned(), px)).or_insert_with(|| fonts.render(name, px as f32).map(Rc::new)).clone()
    }

    /// Blends a rasterised name in white with its top left at (x, y), clipped to `clip`.
    fn blend(&mut self, c: &Coverage, x: u32, y: u32, clip: Rect) {
        let stride = self.frame.stride(0);
        let data = self.frame.data_mut(0);
        let (right, bottom) = (clip.x + clip.w, clip.y + clip.h);
        for row in 0..c.height {
            let py = y + row;
            if py < clip.y || py >= bottom {
                continue;
            }
            for col in 0..c.width {
                let px = x + col;
                let a = u32::from(c.alpha[(row * c.width + col) as usize]);
                if a == 0 || px < clip.x || px >= right {
                    continue;
                }
                let at = py as usize * stride + px as usize;
                if let Some(p) = data.get_mut(at) {
                    *p = ((u32::from(*p) * (255 - a) + u32::from(TEXT_Y) * a) / 255) as u8;
                }
            }
        }
    }

    fn draw(&mut self, tracks: &[Track], at_ms: i64, scalers: &mut Scalers) -> Result<(), ComposeError> {
        let (width, height) = (self.frame.width(), self.frame.height());
        self.fill(Rect { x: 0, y: 0, w: width, h: height }, BACKGROUND_Y);
        let screen = tracks
            .iter()
            .filter(|t| t.screen && t.present(at_ms))
            .filter_map(|t| t.live_picture(at_ms, SCREEN_STALE_MS).map(|p| (t, p)))
            .max_by_key(|(t, _)| t.shown.as_ref().map_or(0, |(ts, _)| *ts));
        // Everyone there when the recording began by name, then people in the order they came.
        let mut people: Vec<&Track> = tracks.iter().filter(|t| !t.screen && t.present(at_ms)).collect();
        people.sort_by(|a, b| (a.first_ms.max(2_000), &a.name).cmp(&(b.first_ms.max(2_000), &b.name)));
        let (screen_rect, tiles) = layout(width, height, people.len(), screen.is_some());
        if let (Some(rect), Some((track, picture))) = (screen_rect, screen) {
            let drawn = self.picture(picture, rect, scalers)?;
            self.label(drawn, &format!("{} (screen)", track.name));
        }
        for (track, rect) in people.iter().zip(tiles) {
            match track.live_picture(at_ms, CAMERA_STALE_MS) {
                Some(picture) => {
                    self.fill(rect, 16);
                    self.picture(picture, rect, scalers)?;
                    self.label(rect, &track.name);
                }
                None => self.name_card(rect, &track.name),
            }
        }
        Ok(())
    }

    /// Fills a rectangle with a grey of luma `y`.
    fn fill(&mut self, r: Rect, y: u8) {
        for (plane, value, shift) in [(0, y, 0), (1, NEUTRAL_UV, 1), (2, NEUTRAL_UV, 1)] {
            let stride = self.frame.stride(plane);
            let data = self.frame.data_mut(plane);
            for row in (r.y >> shift)..((r.y + r.h) >> shift) {
                let start = row as usize * stride + (r.x >> shift) as usize;
                let end = start + (r.w >> shift) as usize;
                if let Some(line) = data.get_mut(start..end) {
                    line.fill(value);
                }
            }
        }
    }

    /// Draws a picture fitted into `r`, keeping its proportions (bars around it); returns
    /// where it went.
    fn picture(&mut self, picture: &frame::Video, r: Rect, scalers: &mut Scalers) -> Result<Rect, ComposeError> {
        let (pw, ph) = (picture.width().max(1), picture.height().max(1));
        let scale = (f64::from(r.w) / f64::from(pw)).min(f64::from(r.h) / f64::from(ph));
        let w = even((f64::from(pw) * scale) as u32).clamp(2, r.w);
        let h = even((f64::from(ph) * scale) as u32).clamp(2, r.h);
        let x = even(r.x + (r.w - w) / 2);
        let y = even(r.y + (r.h - h) / 2);
        let scaled = scalers.scale(picture, w, h)?;
        for (plane, shift) in [(0usize, 0u32), (1, 1), (2, 1)] {
            let (src_stride, dst_stride) = (scaled.stride(plane), self.frame.stride(plane));
            let line = (w >> shift) as usize;
            let src = scaled.data(plane);
            let dst = self.frame.data_mut(plane);
            for row in 0..(h >> shift) as usize {
                let s = row * src_stride;
                let d = ((y >> shift) as usize + row) * dst_stride + (x >> shift) as usize;
                if let (Some(from), Some(to)) = (src.get(s..s + line), dst.get_mut(d..d + line)) {
                    to.copy_from_slice(from);
                }
            }
        }
        Ok(Rect { x, y, w, h })
    }

    /// A name on a dark band at the bottom left of a tile.
    fn label(&mut self, r: Rect, name: &str) {
        let px = if r.h >= 300 { 30 } else { 18 };
        let Some(text) = self.rendered(name, px) else { return self.bitmap_label(r, name) };
        let band_h = even((text.height + 8).min(r.h));
        let band = Rect { x: r.x, y: even(r.y + r.h - band_h), w: even((text.width + 16).min(r.w)), h: band_h };
        self.darken(band);
        let inside = Rect { x: band.x + 8, y: band.y, w: band.w.saturating_sub(16), h: band.h };
        self.blend(&text, band.x + 8, band.y + 4, inside);
    }

    /// A tile for someone whose camera is off: their name, large, on a grey card.
    fn name_card(&mut self, r: Rect, name: &str) {
        self.fill(r, CARD_Y);
        // As large as fits: a third of the tile high, four fifths of it wide.
        let mut px = (r.h / 3).clamp(12, 120);
        let Some(mut text) = self.rendered(name, px) else { return self.bitmap_name_card(r, name) };
        let widest = r.w * 4 / 5;
        if text.width > widest {
            px = (px * widest / text.width).max(12);
            text = self.rendered(name, px).unwrap_or(text);
        }
        let x = r.x + r.w.saturating_sub(text.width) / 2;
        let y = r.y + r.h.saturating_sub(text.height) / 2;
        self.blend(&text, x, y, r);
    }

    /// [`Canvas::label`] without fonts: the Latin-1 bitmap.
    fn bitmap_label(&mut self, r: Rect, name: &str) {
        let scale = if r.h >= 300 { 2 } else { 1 };
        let text_w = (r.w.saturating_sub(16) / (8 * scale)) as usize;
        let text: String = name.chars().take(text_w).collect();
        let band = Rect {
            x: r.x,
            y: even(r.y + r.h - (16 * scale + 8).min(r.h)),
            w: even((text.chars().count() as u32 * 8 * scale + 16).min(r.w)),
            h: even((16 * scale + 8).min(r.h)),
        };
        self.darken(band);
        self.text(&text, band.x + 8, band.y + 4, scale);
    }

    /// [`Canvas::name_card`] without fonts: the Latin-1 bitmap.
    fn bitmap_name_card(&mut self, r: Rect, name: &str) {
        let chars = name.chars().count().max(1) as u32;
        let scale = (r.w * 8 / 10 / (chars * 8)).clamp(1, 5).min(r.h / 3 / 16).max(1);
        let max_chars = (r.w / (8 * scale)) as usize;
        let text: String = name.chars().take(max_chars).collect();
        let w = text.chars().count() as u32 * 8 * scale;
        self.text(&text, r.x + (r.w.saturating_sub(w)) / 2, r.y + (r.h.saturating_sub(16 * scale)) / 2, scale);
    }

    fn darken(&mut self, r: Rect) {
        let stride = self.frame.stride(0);
        let data = self.frame.data_mut(0);
        for row in r.y..r.y + r.h {
            let start = row as usize * stride + r.x as usize;
            if let Some(line) = data.get_mut(start..start + r.w as usize) {
                for p in line {
                    *p = 16 + p.saturating_sub(16) / 3;
                }
            }
        }
    }

    /// Writes `text` in white with its top left at (x, y), each glyph pixel `scale`² pixels.
    fn text(&mut self, text: &str, x: u32, y: u32, scale: u32) {
        let stride = self.frame.stride(0);
        let (width, height) = (self.frame.width(), self.frame.height());
        let data = self.frame.data_mut(0);
        for (i, ch) in text.chars().enumerate() {
            let rows = glyph(ch);
            let gx = x + i as u32 * 8 * scale;
            for (row, bits) in rows.iter().enumerate() {
                for col in 0..8u32 {
                    if bits & (0x80 >> col) == 0 {
                        continue;
                    }
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let (px, py) = (gx + col * scale + dx, y + row as u32 * scale + dy);
                            if px < width && py < height {
                                data[py as usize * stride + px as usize] = TEXT_Y;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The bitmap of a character; outside Latin-1, a question mark.
fn glyph(ch: char) -> &'static [u8; 16] {
    let code = ch as u32;
    let index = match code {
        0x20..=0x7E => code - 0x20,
        0xA0..=0xFF => code - 0xA0 + 95,
        _ => u32::from(b'?') - 0x20,
    };
    &GLYPHS[index as usize]
}

/// The MP4 being written, with its two encoders.
struct Output {
    output: format::context::Output,
    video: ffmpeg::encoder::Video,
    audio: ffmpeg::encoder::Audio,
    video_base: Rational,
    audio_base: Rational,
    audio_frame: frame::Audio,
}

impl Output {
    fn create(path: &Path, settings: &Settings) -> Result<Output, ComposeError> {
        crate::files::private_file(path)?;
        let mut output = format::output_as(path, "mp4")?;
        let global_header = output.format().flags().contains(format::Flags::GLOBAL_HEADER);

        let h264 = ffmpeg::encoder::find_by_name("libx264").ok_or(ComposeError::Missing("H.264 (libx264)"))?;
        let mut video = codec::Context::new_with_codec(h264).encoder().video()?;
        video.set_width(settings.width);
        video.set_height(settings.height);
        video.set_format(Pixel::YUV420P);
        let video_base = Rational(1, settings.fps.max(1) as i32);
        video.set_time_base(video_base);
        video.set_frame_rate(Some(Rational(settings.fps.max(1) as i32, 1)));
        video.set_gop(settings.fps.max(1) * 2);
        if global_header {
            video.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let mut options = Dictionary::new();
        options.set("preset", &settings.preset);
        options.set("crf", "24");
        options.set("threads", &settings.threads.max(1).to_string());
        let video = video.open_as_with(h264, options)?;

        let aac = ffmpeg::encoder::find(Id::AAC).ok_or(ComposeError::Missing("AAC"))?;
        let mut audio = codec::Context::new_with_codec(aac).encoder().audio()?;
        audio.set_rate(AUDIO_RATE as i32);
        audio.set_channel_layout(ChannelLayout::MONO);
        audio.set_channels(1);
        audio.set_format(Sample::F32(sample::Type::Planar));
        let audio_base = Rational(1, AUDIO_RATE as i32);
        audio.set_time_base(audio_base);
        audio.set_bit_rate(96_000);
        if global_header {
            audio.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let audio = audio.open_as(aac)?;

        let mut stream = output.add_stream_with(&video)?;
        stream.set_time_base(video_base);
        let mut stream = output.add_stream_with(&audio)?;
        stream.set_time_base(audio_base);
        let mut options = Dictionary::new();
        // The index goes first so that playback and seeking start before the download ends.
        options.set("movflags", "+faststart");
        output.write_header_with(options)?;
        let mut audio_frame = frame::Audio::new(Sample::F32(sample::Type::Planar), AAC_FRAME, ChannelLayout::MONO);
        audio_frame.set_rate(AUDIO_RATE as u32);
        Ok(Output { output, video, audio, video_base, audio_base, audio_frame })
    }

    fn video_frame(&mut self, picture: &mut frame::Video, index: i64) -> Result<(), ComposeError> {
        picture.set_pts(Some(index));
        self.video.send_frame(picture)?;
        self.drain_video()
    }

    fn audio_frame(&mut self, samples: &[f32], first_sample: i64) -> Result<(), ComposeError> {
        self.audio_frame.plane_mut::<f32>(0)[..samples.len()].copy_from_slice(samples);
        self.audio_frame.set_pts(Some(first_sample));
        self.audio.send_frame(&self.audio_frame)?;
        self.drain_audio()
    }

    fn drain_video(&mut self) -> Result<(), ComposeError> {
        let mut packet = Packet::empty();
        while self.video.receive_packet(&mut packet).is_ok() {
            write(&mut self.output, &mut packet, 0, self.video_base)?;
        }
        Ok(())
    }

    fn drain_audio(&mut self) -> Result<(), ComposeError> {
        let mut packet = Packet::empty();
        while self.audio.receive_packet(&mut packet).is_ok() {
            write(&mut self.output, &mut packet, 1, self.audio_base)?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<(), ComposeError> {
        self.video.send_eof()?;
        self.drain_video()?;
        self.audio.send_eof()?;
        self.drain_audio()?;
        self.output.write_trailer()?;
        Ok(())
    }
}

fn write(
    output: &mut format::context::Output,
    packet: &mut Packet,
    stream: usize,
    base: Rational,
) -> Result<(), ComposeError> {
    let stream_base = output.stream(stream).map_or(base, |s| s.time_base());
    packet.set_stream(stream);
    packet.rescale_ts(base, stream_base);
    packet.write_interleaved(output)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inside(r: Rect, w: u32, h: u32) -> bool {
        r.x + r.w <= w && r.y + r.h <= h && [r.x, r.y, r.w, r.h].iter().all(|v| v.is_multiple_of(2))
    }

    fn overlap(a: Rect, b: Rect) -> bool {
        a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h
    }

    #[test]
    fn grid_tiles_fit_do_not_overlap_and_grow_as_people_leave() {
        let mut previous_w = 0;
        for n in (1..=25).rev() {
            let (screen, tiles) = layout(1280, 720, n, false);
            assert!(screen.is_none());
            assert_eq!(tiles.len(), n);
            for (i, a) in tiles.iter().enumerate() {
                assert!(inside(*a, 1280, 720), "{n} people: tile {a:?} is outside or odd");
                for b in &tiles[i + 1..] {
                    assert!(!overlap(*a, *b), "{n} people: {a:?} overlaps {b:?}");
                }
            }
            assert!(tiles[0].w >= previous_w, "fewer people, tiles no smaller");
            previous_w = tiles[0].w;
        }
        let (_, four) = layout(1280, 720, 4, false);
        assert!(four[0].w >= 600, "four people share the picture 2×2: {four:?}");
    }

    #[test]
    fn a_screen_share_takes_most_of_the_picture_and_people_stay_beside_it() {
        for n in 0..=12 {
            let (screen, tiles) = layout(1280, 720, n, true);
            let screen = screen.expect("screen");
            assert!(inside(screen, 1280, 720));
            assert!(screen.w * screen.h >= 1280 * 720 * 3 / 4, "the screen is large");
            assert_eq!(tiles.len(), n);
            for t in &tiles {
                assert!(inside(*t, 1280, 720) && !overlap(*t, screen), "{n}: {t:?}");
            }
        }
    }

    #[test]
    fn names_outside_latin1_are_drawn_with_a_placeholder() {
        assert_eq!(glyph('A'), &GLYPHS[33]);
        assert_eq!(glyph('é'), &GLYPHS[0xE9 - 0xA0 + 95]);
        assert_eq!(glyph('名'), glyph('?'));
    }
}
