//! Runnable examples of the saga coordinator, and what they share: [`LocalServices`], a
//! coordinator and the three example participants started in this process on free loopback
//! ports, each with a fresh data directory, registered and ready.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use example_participants::{ParticipantConfig, ParticipantKind, RunningParticipant};
use sagas::CoordinatorClient;

/// A coordinator and the wallet, order and points participants, on loopback.
pub struct LocalServices {
    /// The coordinator, with the `sagas/` workflow files loaded.
    pub coordinator: coordinator::RunningCoordinator,
    /// The wallet participant (TCC `freeze`).
    pub wallet: RunningParticipant,
    /// The order participant (SAGA `create`).
    pub order: RunningParticipant,
    /// The points participant (SAGA `award`).
    pub points: RunningParticipant,
}

/// The repository's workflow files (`sagas/`).
pub fn workflow_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sagas")
}

impl LocalServices {
    /// Starts everything with its data under `data`, and waits (at most 20 s) until the
    /// participants have registered and the coordinator is ready.
    pub async fn start(data: &Path) -> anyhow::Result<LocalServices> {
        let mut options = coordinator::CoordinatorOptions::ephemeral(data.join("coordinator"));
        options.workflows = Some(workflow_dir());
        let coordinator = coordinator::start(options)
            .await
            .context("starting the coordinator")?;
        let url = coordinator.url();
        let start = |kind: ParticipantKind| {
            let config = ParticipantConfig::new(kind)
                .with_listen("127.0.0.1:0".parse().expect("literal address"))
                .with_data_dir(data.join(kind.name()))
                .with_coordinator(url.clone());
            async move {
                let running = match kind {
                    ParticipantKind::Wallet => example_participants::wallet::start(config).await,
                    ParticipantKind::Order => example_participants::order::start(config).await,
                    ParticipantKind::Points => example_participants::points::start(config).await,
                };
                running.with_context(|| format!("starting {}", kind.name()))
            }
        };
        let services = LocalServices {
            wallet: start(ParticipantKind::Wallet).await?,
            order: start(ParticipantKind::Order).await?,
            points: start(ParticipantKind::Points).await?,
            coordinator,
        };
        services.wait_until_registered().await?;
        Ok(services)
    }

    /// A client of the coordinator.
    pub fn client(&self) -> CoordinatorClient {
        CoordinatorClient::new(self.coordinator.url())
    }

    async fn wait_until_registered(&self) -> anyhow::Result<()> {
        let client = self.client();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        for name in ["wallet", "order", "points"] {
            loop {
                let registered =
                    reqwest::get(format!("{}/v1/participants/{name}", client.base_url()))
                        .await
                        .is_ok_and(|r| r.status().is_success());
                if registered && client.is_ready().await {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    bail!("participant {name} did not register within 20 s");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// Stops the participants, then the coordinator.
    pub async fn shutdown(self) {
        for participant in [self.wallet, self.order, self.points] {
            participant.shutdown().await;
        }
        self.coordinator.shutdown().await;
    }
}
