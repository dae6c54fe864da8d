//! Medians and latency percentiles.

/// Median of the values (mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    // The two middle elements coincide for an odd count.
    let n = sorted.len();
    Some((sorted[(n - 1) / 2] + sorted[n / 2]) / 2.0)
}

/// The `q`-quantile (0.0–1.0, nearest rank) of sorted samples; `None` when empty.
pub fn quantile(sorted: &[u32], q: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Microseconds as milliseconds with two decimals, `-` for none.
pub fn ms(micros: Option<u32>) -> String {
    micros.map_or_else(
        || "-".to_string(),
        |us| format!("{:.2}", us as f64 / 1000.0),
    )
}

/// `p50 … ms, p90 … ms, p99 … ms, max … ms (n samples)` of sorted microsecond samples.
pub fn summary(sorted: &[u32]) -> String {
    format!(
        "p50 {} ms, p90 {} ms, p99 {} ms, max {} ms ({} samples)",
        ms(quantile(sorted, 0.50)),
        ms(quantile(sorted, 0.90)),
        ms(quantile(sorted, 0.99)),
        ms(sorted.last().copied()),
        sorted.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let samples: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile(&samples, 0.5), Some(50));
        assert_eq!(quantile(&samples, 0.99), Some(99));
        assert_eq!(quantile(&samples, 1.0), Some(100));
        assert_eq!(quantile(&samples, 0.0), Some(1));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
