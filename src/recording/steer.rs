//! Where a participant's decoded audio goes in a composed recording.
//!
//! **The capture timestamps rule.** Every audio frame carries the time its first sample
//! was captured, on the sender's wall clock, which the recorder maps onto the recording's
//! clock (see `recorder`). A microphone's sample clock is not that clock: 100 ppm fast is
//! 48 004.8 samples a second. Laying the samples end to end by their count would drift
//! 6 ms a minute from the pictures, which are placed by their timestamps; so the samples
//! are stretched or squeezed, gently, to follow the timestamps, the way the live playout
//! buffer steers (`web/call/playout-worklet.js`):
//! - a small error (up to [`JUMP_SAMPLES`]) is smoothed and absorbed by playing at most
//!   [`MAX_STRETCH`] faster or slower, through a linear-interpolating resampler whose phase
//!   carries over from chunk to chunk, so there is no audible step;
//! - a larger gap (mute, a dropped connection) is silence, and audio that overlaps what
//!   was already placed (the sender's clock went back) is dropped.
//!
//! Why by hand: the stretch is within ±0.5 %, which linear interpolation does cleanly for
//! speech at 48 kHz (at 4 kHz, under 0.3 dB at the worst phase) for a few lines and no
//! allocation beyond the output; a general resampling crate would bring FFT dependencies
//! and cost more per sample than the composition can spare.
//!
//! Sans-IO: chunks in, placed chunks out; tested below with synthetic clocks.

/// The composition's audio rate.
pub const RATE: i64 = 48_000;
/// Beyond this distance from where the timestamps want it (60 ms), audio is re-placed
/// at once (silence for a gap, dropped for an overlap) rather than steered.
pub const JUMP_SAMPLES: i64 = RATE * 60 / 1000;
/// At most this much faster or slower than the samples' own rate (0.5 %, about 9 cents
/// of pitch at the most, for as long as it takes to absorb a tens-of-milliseconds error).
pub const MAX_STRETCH: f64 = 0.005;
/// A steady error of this many samples is absorbed at 100 % stretch per second: the
/// controller's time constant is one second.
const STEER_SAMPLES: f64 = RATE as f64;
/// How much of each new error reading enters the smoothed error (timestamps in a WebM
/// file are whole milliseconds: a reading jitters by ±24 samples).
const SMOOTHING: f64 = 0.1;

/// One participant's audio timeline in a composition.
#[derive(Debug, Default)]
pub struct AudioSteer {
    /// Where the next output sample goes, on the recording's 48 kHz clock.
    next: Option<i64>,
    /// Smoothed (wanted − next), in samples.
    error: f64,
    /// The resampler's read position, relative to the next chunk's first sample; −1 is the
    /// previous chunk's last sample (`prev`), so it lies in (−1, `MAX_STRETCH`].
    phase: f64,
    prev: f32,
    /// Samples inserted (silence) or dropped at jumps, for the tests and the logs.
    pub jumps: u32,
}

impl AudioSteer {
    /// Places `samples`, whose first sample was captured at recording sample `wanted`.
    /// Returns where the output starts and the output, or None if all of it overlaps
    /// audio already placed.
    pub fn place(&mut self, wanted: i64, samples: &[f32]) -> Option<(i64, Vec<f32>)> {
        if samples.is_empty() {
            return None;
        }
        let Some(next) = self.next else { return Some(self.restart(wanted, samples)) };
        let error = wanted - next;
        if error > JUMP_SAMPLES {
            self.jumps += 1;
            return Some(self.restart(wanted, samples));
        }
        if error < -JUMP_SAMPLES {
            // What lies before `next` was heard already: drop it, keep the rest.
            self.jumps += 1;
            let overlap = usize::try_from(next - wanted).unwrap_or(usize::MAX);
            return (overlap < samples.len()).then(|| self.restart(next, &samples[overlap..]));
        }
        self.error += (error as f64 - self.error) * SMOOTHING;
        let stretch = (self.error / STEER_SAMPLES).clamp(-MAX_STRETCH, MAX_STRETCH);
        let out = self.resample(samples, 1.0 / (1.0 + stretch));
        self.next = Some(next + out.len() as i64);
        Some((next, out))
    }

    /// Starts afresh at `at`: the samples as they are.
    fn restart(&mut self, at: i64, samples: &[f32]) -> (i64, Vec<f32>) {
        self.error = 0.0;
        self.phase = 0.0;
        let out = self.resample(samples, 1.0);
        self.next = Some(at + out.len() as i64);
        (at, out)
    }

    /// Reads `samples` at `step` input samples per output sample, interpolating linearly
    /// and carrying the phase over to the next chunk.
    fn resample(&mut self, samples: &[f32], step: f64) -> Vec<f32> {
        let n = samples.len();
        let last = (n - 1) as f64;
        let mut out = Vec::with_capacity(n + n / 100 + 2);
        let mut p = self.phase;
        while p <= last {
            let floor = p.floor();
            let fraction = (p - floor) as f32;
            let i = floor as isize;
            let a = if i < 0 { self.prev } else { samples[i as usize] };
            // A fraction means p < last, so the next sample exists.
            out.push(if fraction > 0.0 { a + (samples[(i + 1) as usize] - a) * fraction } else { a });
            p += step;
        }
        self.phase = p - n as f64;
        self.prev = samples[n - 1];
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sender whose sample clock runs `ppm` fast against the wall clock: 960-sample
    /// frames whose true capture times (in recording samples, rounded to whole
    /// milliseconds as a WebM file keeps them) advance by 960 / (1 + ppm) samples.
    fn frames(ppm: f64, count: usize) -> impl Iterator<Item = (i64, Vec<f32>, f64)> {
        let per_frame = 960.0 / (1.0 + ppm * 1e-6);
        (0..count).map(move |k| {
            let truth = 48_000.0 + k as f64 * per_frame;
            let ms = (truth / 48.0).round() as i64;
            // A 440 Hz tone counted in the sender's samples: continuous across frames.
            let samples = (0..960)
                .map(|i| {
                    let cycles = ((k * 960 + i) as f64 * 440.0 / 48_000.0).fract();
                    (cycles * std::f64::consts::TAU).sin() as f32 * 0.5
                })
                .collect();
            (ms * 48, samples, truth)
        })
    }

    /// Places ten minutes of frames (the integration tests run an hour); returns the largest timing error (samples) after the
    /// first second, and the largest step between consecutive output samples.
    fn ten_minutes_at(ppm: f64) -> (f64, f32, u32) {
        let mut steer = AudioSteer::default();
        let (mut worst, mut biggest_step) = (0f64, 0f32);
        let mut last: Option<(i64, f32)> = None;
        for (k, (wanted, samples, truth)) in frames(ppm, 50 * 600).enumerate() {
            let (start, out) = steer.place(wanted, &samples).expect("placed");
            if let Some((end, sample)) = last {
                assert_eq!(start, end, "frame {k} is not contiguous");
                biggest_step = biggest_step.max((out[0] - sample).abs());
            }
            for pair in out.windows(2) {
                biggest_step = biggest_step.max((pair[1] - pair[0]).abs());
            }
            if k > 50 {
                worst = worst.max((start as f64 - truth).abs());
            }
            last = Some((start + out.len() as i64, *out.last().expect("samples")));
        }
        (worst, biggest_step, steer.jumps)
    }

    #[test]
    fn a_fast_or_slow_microphone_stays_within_a_millisecond_of_its_timestamps() {
        // A 440 Hz tone at 0.5 moves at most 0.029 a sample: a click would be far above.
        for ppm in [100.0, -100.0, 500.0] {
            let (worst, step, jumps) = ten_minutes_at(ppm);
            assert!(worst < 48.0, "{ppm} ppm: {} ms off", worst / 48.0);
            assert!(step < 0.035, "{ppm} ppm: a step of {step}");
            assert_eq!(jumps, 0, "{ppm} ppm");
        }
    }

    #[test]
    fn a_gap_is_silence_and_an_overlap_is_dropped() {
        let mut steer = AudioSteer::default();
        let tone = vec![0.25f32; 960];
        assert_eq!(steer.place(0, &tone).map(|(at, out)| (at, out.len())), Some((0, 960)));
        // Muted for a second: the next frame goes where it says.
        assert_eq!(steer.place(48_960, &tone).map(|(at, out)| (at, out.len())), Some((48_960, 960)));
        assert_eq!(steer.jumps, 1);
        // The sender's clock went back half a second: what was heard already is dropped.
        assert_eq!(steer.place(49_920 - 24_000, &tone), None);
        assert_eq!(steer.jumps, 2);
        // 10 ms early is steered, not dropped.
        let (at, out) = steer.place(49_920 - 480, &tone).expect("steered");
        assert_eq!(at, 49_920);
        assert!((955..=960).contains(&out.len()), "{}", out.len());
        let next = at + out.len() as i64;
        // 62 ms early, 100 ms long: the first 62 ms were heard already.
        let long = vec![0.25f32; 4_800];
        let (at, out) = steer.place(next - 3_000, &long).expect("partly new");
        assert_eq!((at, out.len()), (next, 1_800));
        assert_eq!(steer.jumps, 3);
    }

    #[test]
    fn a_small_offset_is_absorbed_within_seconds_without_a_jump() {
        let mut steer = AudioSteer::default();
        let tone = vec![0.1f32; 960];
        steer.place(0, &tone);
        // From now on the timestamps say 30 ms later than where the audio went.
        let shift = 1_440;
        let mut at = 0;
        let mut wanted = 960 + shift;
        for _ in 0..50 * 20 {
            let (start, out) = steer.place(wanted, &tone).expect("placed");
            at = start + out.len() as i64;
            wanted += 960;
        }
        assert_eq!(steer.jumps, 0);
        assert!((wanted - at).abs() < 48, "still {} samples off after 20 s", wanted - at);
    }
}
