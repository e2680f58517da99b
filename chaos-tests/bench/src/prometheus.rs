//! Reading counters and gauges from the coordinator's `GET /metrics` (Prometheus text format).

use std::time::Duration;

use anyhow::Context;

/// Bytes the coordinator wrote to its saga log (added by the store; may be absent).
pub const LOG_BYTES: &str = "coordinator_log_bytes_total";
/// Group-commit flushes of the saga log: fsync batches on sled, commit transactions on
/// PostgreSQL.
pub const LOG_FLUSHES: &str = "coordinator_log_flushes_total";
/// Sagas that reached a terminal state, over every label (workflow, state).
pub const SAGAS_FINISHED: &str = "coordinator_sagas_finished_total";
/// Gauge: sagas the coordinator drives right now (one task each), recovered ones included.
pub const SAGAS_ACTIVE: &str = "coordinator_sagas_active";

/// The counters a run compares before and after its load; `None` where the coordinator does
/// not export the metric.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    /// `coordinator_log_bytes_total`.
    pub log_bytes: Option<f64>,
    /// `coordinator_sagas_finished_total`, summed over workflows and states.
    pub sagas_finished: Option<f64>,
    /// `coordinator_log_flushes_total`.
    pub log_flushes: Option<f64>,
}

impl Counters {
    /// Log bytes per finished saga between `self` (before) and `after`.
    pub fn log_bytes_per_saga(&self, after: &Counters) -> Option<f64> {
        let bytes = after.log_bytes? - self.log_bytes?;
        let sagas = after.sagas_finished? - self.sagas_finished?;
        (sagas > 0.0).then(|| bytes / sagas)
    }

    /// Log flushes per finished saga between `self` (before) and `after`.
    pub fn log_flushes_per_saga(&self, after: &Counters) -> Option<f64> {
        let flushes = after.log_flushes? - self.log_flushes?;
        let sagas = after.sagas_finished? - self.sagas_finished?;
        (sagas > 0.0).then(|| flushes / sagas)
    }

    /// The sum of two instances' counters (`None` where either lacks one).
    pub fn plus(&self, other: &Counters) -> Counters {
        let add = |a: Option<f64>, b: Option<f64>| Some(a? + b?);
        Counters {
            log_bytes: add(self.log_bytes, other.log_bytes),
            sagas_finished: add(self.sagas_finished, other.sagas_finished),
            log_flushes: add(self.log_flushes, other.log_flushes),
        }
    }
}

/// Scrapes `{coordinator}/metrics`.
pub async fn scrape(http: &reqwest::Client, coordinator: &str) -> anyhow::Result<Counters> {
    let text = fetch(http, coordinator).await?;
    Ok(Counters {
        log_bytes: sample_sum(&text, LOG_BYTES),
        sagas_finished: sample_sum(&text, SAGAS_FINISHED),
        log_flushes: sample_sum(&text, LOG_FLUSHES),
    })
}

/// [`scrape`] of every coordinator of a cluster, summed.
pub async fn scrape_all(
    http: &reqwest::Client,
    coordinators: &[String],
) -> anyhow::Result<Counters> {
    let mut total: Option<Counters> = None;
    for coordinator in coordinators {
        let counters = scrape(http, coordinator).await?;
        total = Some(match total {
            Some(sum) => sum.plus(&counters),
            None => counters,
        });
    }
    total.context("no coordinator to scrape")
}

/// The whole text of `{coordinator}/metrics`.
pub async fn fetch(http: &reqwest::Client, coordinator: &str) -> anyhow::Result<String> {
    http.get(format!("{coordinator}/metrics"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .context("GET /metrics")?
        .text()
        .await
        .context("reading /metrics")
}

/// The sum of every sample of metric `name` (all label sets): a counter's total, a gauge's
/// value; `None` if there is none.
pub fn sample_sum(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            // `name{labels} value` or `name value`, not `name_suffix ...`.
            let value = if rest.starts_with('{') {
                rest.rsplit_once('}')?.1
            } else if rest.starts_with(' ') {
                rest
            } else {
                return None;
            };
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .reduce(|a, b| a + b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_every_label_set_of_exactly_that_metric() {
        let text = "\
# TYPE coordinator_sagas_finished_total counter
coordinator_sagas_finished_total{workflow=\"place_order\",state=\"committed\"} 90
coordinator_sagas_finished_total{workflow=\"place_order\",state=\"aborted\"} 10
coordinator_sagas_finished_total_other 5
coordinator_log_bytes_total 123456
";
        assert_eq!(sample_sum(text, SAGAS_FINISHED), Some(100.0));
        assert_eq!(sample_sum(text, LOG_BYTES), Some(123456.0));
        assert_eq!(sample_sum(text, "absent_total"), None);
        assert_eq!(
            sample_sum("coordinator_sagas_active 100000\n", SAGAS_ACTIVE),
            Some(100000.0)
        );
        let before = Counters {
            log_bytes: Some(1000.0),
            sagas_finished: Some(10.0),
            log_flushes: Some(4.0),
        };
        let after = Counters {
            log_bytes: Some(5000.0),
            sagas_finished: Some(30.0),
            log_flushes: Some(64.0),
        };
        assert_eq!(before.log_bytes_per_saga(&after), Some(200.0));
        assert_eq!(before.log_flushes_per_saga(&after), Some(3.0));
        assert_eq!(Counters::default().log_bytes_per_saga(&after), None);
        let two = before.plus(&after);
        assert_eq!((two.log_bytes, two.log_flushes), (Some(6000.0), Some(68.0)));
        assert_eq!(before.plus(&Counters::default()).log_bytes, None);
    }
}
