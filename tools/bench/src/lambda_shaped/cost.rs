//! What Lambda bills: duration rounded up to the next millisecond at the configured memory, the
//! init phase included for `provided.al2023` functions, plus a fee per request.

use std::time::Duration;

/// arm64 duration price, first pricing tier (US East, N. Virginia), USD per GB-second, from
/// https://aws.amazon.com/lambda/pricing/ as of 2026-12.
pub const ARM64_USD_PER_GB_SECOND: f64 = 0.000_013_333_4;
/// The request fee, USD per million requests.
pub const USD_PER_MILLION_REQUESTS: f64 = 0.20;

/// Billed milliseconds of one invocation: rounded up to the next whole millisecond.
pub fn billed_ms(d: Duration) -> u64 {
    let nanos = d.as_nanos();
    u64::try_from(nanos.div_ceil(1_000_000)).unwrap_or(u64::MAX).max(1)
}

/// The requests of a workload: shares of warm paths (summing to 1) and the share of requests that
/// land on a new execution environment (their billed time is init + that first invocation).
pub struct Mix {
    pub cold_share: f64,
    /// (share of the warm requests, mean billed ms of that path).
    pub warm: Vec<(f64, f64)>,
    /// Billed ms of one cold request (init + first response, rounded up once).
    pub cold_billed_ms: f64,
}

impl Mix {
    /// Mean billed milliseconds per request.
    pub fn mean_billed_ms(&self) -> f64 {
        let warm: f64 = self.warm.iter().map(|(share, ms)| share * ms).sum();
        (1.0 - self.cold_share) * warm + self.cold_share * self.cold_billed_ms
    }

    /// USD of billed duration per million requests at `memory_mb`: what the code and the memory
    /// size decide (the request fee is the same for every function and runtime).
    pub fn duration_usd_per_million(&self, memory_mb: u64) -> f64 {
        let gb = memory_mb as f64 / 1024.0;
        1e6 * self.mean_billed_ms() / 1000.0 * gb * ARM64_USD_PER_GB_SECOND
    }

    /// USD per million requests at `memory_mb`, duration and request fee.
    pub fn usd_per_million(&self, memory_mb: u64) -> f64 {
        self.duration_usd_per_million(memory_mb) + USD_PER_MILLION_REQUESTS
    }
}

/// Mean billed ms over a run of invocations.
pub fn mean_billed(latencies: &[Duration]) -> f64 {
    if latencies.is_empty() {
        return 0.0;
    }
    latencies.iter().map(|d| billed_ms(*d) as f64).sum::<f64>() / latencies.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_rounds_each_invocation_up_to_a_millisecond() {
        assert_eq!(billed_ms(Duration::from_micros(1)), 1);
        assert_eq!(billed_ms(Duration::from_micros(1000)), 1);
        assert_eq!(billed_ms(Duration::from_micros(1001)), 2);
        assert_eq!(mean_billed(&[Duration::from_micros(400), Duration::from_micros(2500)]), 2.0);
    }

    #[test]
    fn a_million_one_millisecond_requests_at_128_mb() {
        let mix = Mix { cold_share: 0.0, warm: vec![(1.0, 1.0)], cold_billed_ms: 0.0 };
        // 1e6 × 0.001 s × 0.125 GB × price + request fee
        let expected = 1e6 * 0.001 * 0.125 * ARM64_USD_PER_GB_SECOND + 0.20;
        assert!((mix.usd_per_million(128) - expected).abs() < 1e-12);
        let cold = Mix { cold_share: 0.01, warm: vec![(0.95, 1.0), (0.05, 11.0)], cold_billed_ms: 100.0 };
        assert!((cold.mean_billed_ms() - (0.99 * 1.5 + 1.0)).abs() < 1e-9);
    }
}
