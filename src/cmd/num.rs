//! Value parsers for numeric flags whose Rust type admits values the command cannot use:
//! NaN, infinities, negatives, zero counts, bit-widths out of range, more seconds than a
//! `Duration` holds. Each refuses them as a usage error (exit status 2; clap names the
//! flag and the value) before any file is read or a GPU opened, where otherwise they would
//! reach the library late, be reported as a file's field, or, for a duration, panic.
use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

use limpq_solver::MAX_BITS;

/// A count of at least 1 (images, a batch, epochs between evaluations).
pub fn count(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("expected a whole number, 1 or more".into()),
    }
}

/// Dispatches recorded into one GPU submission (`bench conv/gemm --reps`): 1 to
/// [`MAX_DISPATCHES`]. Each is held in memory until the submission, so a count past what
/// a timing needs would exhaust the host before the first sample.
#[cfg(feature = "gpu")]
pub fn dispatches(s: &str) -> Result<usize, String> {
    match count(s) {
        Ok(n) if n <= MAX_DISPATCHES => Ok(n),
        _ => Err(format!("expected a whole number, 1 to {MAX_DISPATCHES}")),
    }
}

/// The most dispatches [`dispatches`] takes: ten thousand times the default, well past
/// what hides a submission's fixed cost.
#[cfg(feature = "gpu")]
pub const MAX_DISPATCHES: usize = 100_000;

/// A bit-width the solver accepts, 1 to `MAX_BITS`.
pub fn bits(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(b) if (1..=MAX_BITS).contains(&b) => Ok(b),
        _ => Err(format!("expected a bit-width, 1 to {MAX_BITS}")),
    }
}

/// A finite number of type `T`, zero or more (a value past `T`'s range is infinite).
fn finite_non_negative<T>(s: &str) -> Result<T, String>
where
    T: FromStr + Into<f64> + Copy,
    T::Err: Display,
{
    let x: T = s
        .trim()
        .parse()
        .map_err(|e| format!("expected a number ({e})"))?;
    let v: f64 = x.into();
    if v.is_finite() && v >= 0.0 {
        Ok(x)
    } else {
        Err("expected a finite number, zero or more".into())
    }
}

/// A label smoothing: a number in [0, 1).
#[cfg(feature = "gpu")]
pub fn fraction_below_one(s: &str) -> Result<f32, String> {
    match finite_non_negative::<f32>(s) {
        Ok(x) if x < 1.0 => Ok(x),
        _ => Err("expected a number in [0, 1)".into()),
    }
}

/// A finite number, zero or more.
pub fn non_negative(s: &str) -> Result<f64, String> {
    finite_non_negative(s)
}

/// A finite `f32`, zero or more (a learning rate, momentum, weight decay).
#[cfg(feature = "gpu")]
pub fn non_negative_f32(s: &str) -> Result<f32, String> {
    finite_non_negative(s)
}

/// Seconds, zero or more, that a `Duration` can hold.
pub fn seconds(s: &str) -> Result<Duration, String> {
    let x = non_negative(s)?;
    Duration::try_from_secs_f64(x).map_err(|_| "more seconds than a duration can hold".into())
}

/// Seconds, more than zero, that a `Duration` can hold. Everything else (zero, a negative
/// number, NaN, infinity, text) gets the one message of what is expected.
pub fn positive_seconds(s: &str) -> Result<Duration, String> {
    let positive = || "expected a positive number of seconds".to_string();
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => match seconds(s)? {
            Duration::ZERO => Err(positive()),
            d => Ok(d),
        },
        _ => Err(positive()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_a_command_cannot_use() {
        assert_eq!(bits("1"), Ok(1));
        assert_eq!(bits(" 32"), Ok(32));
        for bad in ["0", "33", "-1", "4.0", ""] {
            assert!(bits(bad).is_err(), "{bad}");
        }
        assert_eq!(non_negative("0"), Ok(0.0));
        assert_eq!(non_negative(" 2.5 "), Ok(2.5));
        for bad in ["nan", "NaN", "inf", "-inf", "-1", "1e400", "", "two"] {
            assert!(non_negative(bad).is_err(), "{bad}");
        }
        #[cfg(feature = "gpu")]
        {
            assert_eq!(count("1"), Ok(1));
            for bad in ["0", "-1", "1.5", ""] {
                assert!(count(bad).is_err(), "{bad}");
            }
            assert_eq!(dispatches("100000"), Ok(MAX_DISPATCHES));
            for bad in ["0", "100001", "18446744073709551615"] {
                assert!(dispatches(bad).is_err(), "{bad}");
            }
            assert_eq!(non_negative_f32("0.1"), Ok(0.1));
            for bad in ["nan", "-0.5", "1e39"] {
                assert!(non_negative_f32(bad).is_err(), "{bad}");
            }
        }
        assert_eq!(seconds("0"), Ok(Duration::ZERO));
        assert_eq!(seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert!(seconds("1e300").unwrap_err().contains("more seconds than"));
        for not_positive in ["0", "-1", "-0.5", "NaN", "inf", "x", "1e-300"] {
            assert_eq!(
                positive_seconds(not_positive).unwrap_err(),
                "expected a positive number of seconds",
                "{not_positive}"
            );
        }
        assert!(positive_seconds("1e300")
            .unwrap_err()
            .contains("duration can hold"));
        assert_eq!(positive_seconds("0.001"), Ok(Duration::from_millis(1)));
    }
}
