//! Seeded random scenarios (`intercloud scenario fuzz`): a federation and a timeline of the existing steps and faults drawn from a seed, written out as the TOML that replays it, with every invariant checked.
//!
//! The draw keeps to timelines whose verdict is defined by the product's
//! promises, not by luck: messages go between clouds that are running (under
//! partitions and lossy links they must arrive or come back, never vanish or
//! arrive twice); presence churn and the paper's negotiation run only on a
//! healthy federation; every timeline ends healed, with every node started
//! and the federation converged, so the final invariants (roots agree, no
//! acknowledged message lost, agreements within capacity) judge a settled
//! state.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::fmt::Write;
use std::path::Path;

/// What to draw.
#[derive(Clone, Debug)]
pub struct FuzzSpec {
    pub seed: u64,
    /// Steps drawn before the closing heal / start / converge / messages.
    pub steps: usize,
    /// Test only: the timeline starts with a stream, the `lose_acked` fault
    /// on its receiver and a second stream, so the run must fail (shows a
    /// failing seed is reported with its TOML).
    pub test_faults: bool,
}

struct Draw {
    rng: rand::rngs::StdRng,
    clouds: Vec<String>,
    all: Vec<String>,
    down: Vec<String>,
    partitioned: bool,
    faulty: bool,
    out: String,
    test_faults: bool,
    sent: bool,
}

impl Draw {
    fn running_clouds(&self) -> Vec<String> {
        self.clouds
            .iter()
            .filter(|c| !self.down.contains(c))
            .cloned()
            .collect()
    }

    fn step(&mut self, body: &str) {
        let _ = write!(self.out, "\n[[step]]\n{body}");
    }

    fn messages(&mut self) -> bool {
        let up = self.running_clouds();
        if up.len() < 2 {
            return false;
        }
        let pair: Vec<&String> = up.choose_multiple(&mut self.rng, 2).collect();
        let (from, to) = (pair[0].clone(), pair[1].clone());
        if self.test_faults && !self.sent {
            // A first stream brings the link up (so the next one is not
            // simply bounced by a link that never came up), then the fault.
            self.step(&format!(
                "action = \"messages\"\nfrom = \"{from}\"\nto = \"{to}\"\ncount = 5\nwithin_secs = 60\n"
            ));
            self.step(&format!("action = \"lose_acked\"\nnode = \"{to}\"\n"));
        }
        self.sent = true;
        let count = self.rng.gen_range(10..=60);
        let rate = self.rng.gen_range(20..=100);
        self.step(&format!(
            "action = \"messages\"\nfrom = \"{from}\"\nto = \"{to}\"\ncount = {count}\nrate = {rate}\nwithin_secs = 60\n"
        ));
        true
    }

    fn link_fault(&mut self) {
        let a = self
            .clouds
            .choose(&mut self.rng)
            .cloned()
            .unwrap_or_default();
        let b = if self.rng.gen_bool(0.5) {
            "*".to_string()
        } else {
            self.all.choose(&mut self.rng).cloned().unwrap_or_default()
        };
        if a == b {
            return;
        }
        let delay = self.rng.gen_range(0..=40);
        let loss = f64::from(self.rng.gen_range(0..=10u32)) / 100.0;
        let dup = f64::from(self.rng.gen_range(0..=5u32)) / 100.0;
        self.faulty = true;
        self.step(&format!(
            "action = \"link_fault\"\na = \"{a}\"\nb = \"{b}\"\ndelay_ms = {delay}\nloss = {loss}\nduplicate = {dup}\n"
        ));
    }

    fn partition(&mut self) {
        let mut nodes = self.all.clone();
        nodes.shuffle(&mut self.rng);
        let cut = self.rng.gen_range(1..nodes.len());
        let (g1, g2) = nodes.split_at(cut);
        let list = |g: &[String]| {
            g.iter()
                .map(|d| format!("\"{d}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        self.partitioned = true;
        self.step(&format!(
            "action = \"partition\"\ngroups = [[{}], [{}]]\n",
            list(g1),
            list(g2)
        ));
    }

    fn kill_or_start(&mut self) {
        if !self.down.is_empty() && self.rng.gen_bool(0.5) {
            let i = self.rng.gen_range(0..self.down.len());
            let node = self.down.remove(i);
            self.step(&format!("action = \"start\"\nnode = \"{node}\"\n"));
            return;
        }
        let up = self.running_clouds();
        // Keep two clouds up for messages.
        if up.len() <= 2 {
            return;
        }
        let Some(node) = up.choose(&mut self.rng).cloned() else {
            return;
        };
        let how = if self.rng.gen_bool(0.5) {
            "kill"
        } else {
            "stop"
        };
        self.down.push(node.clone());
        self.step(&format!("action = \"{how}\"\nnode = \"{node}\"\n"));
    }

    fn heal(&mut self) {
        self.partitioned = false;
        self.faulty = false;
        self.step("action = \"heal\"\n");
    }

    fn healthy(&self) -> bool {
        !self.partitioned && !self.faulty && self.down.is_empty()
    }

    /// On a healthy federation only: churn, or the paper's negotiation.
    fn healthy_step(&mut self, data: &str) {
        let up = self.running_clouds();
        if self.rng.gen_bool(0.5) && up.len() >= 3 {
            let watcher = up[0].clone();
            let churners: Vec<String> = up[1..]
                .choose_multiple(&mut self.rng, 2)
                .map(|c| format!("\"{c}\""))
                .collect();
            let flips = self.rng.gen_range(4..=12);
            self.step(&format!(
                "action = \"presence_churn\"\nwatcher = \"{watcher}\"\nclouds = [{}]\nflips = {flips}\n",
                churners.join(", ")
            ));
        } else {
            let from = up.choose(&mut self.rng).cloned().unwrap_or_default();
            let amount = self.rng.gen_range(1..=5);
            self.step(&format!(
                "action = \"negotiate\"\nfrom = \"{from}\"\nservice = \"storage-replication\"\namount = {amount}\nconstraints = \"{data}/paper_request.xml\"\n"
            ));
        }
    }
}

/// The scenario `spec` draws, as TOML; `data` is the directory of the
/// shipped scenario data (scenarios/data), named by absolute path so the
/// file replays from anywhere.
pub fn generate(spec: &FuzzSpec, data: &Path) -> String {
    let mut rng = rand::rngs::StdRng::seed_from_u64(spec.seed);
    let roots = rng.gen_range(1..=2);
    let exchanges = rng.gen_range(1..=2);
    let clouds = rng.gen_range(3..=5);
    let capacity = rng.gen_range(5..=50);
    let data = data.display().to_string();
    let mut out = String::new();
    let _ = write!(
        out,
        "# Drawn by `intercloud scenario fuzz --seed {seed} --steps {steps}`; replay with\n# `intercloud scenario run THIS_FILE --mode in-process` (or processes).\nname = \"fuzz-{seed}\"\ndescription = \"seeded random timeline {seed}\"\n\n[federation]\nroots = {roots}\nexchanges = {exchanges}\nclouds = {clouds}\nresources = \"{data}/paper-catalog\"\noffers = [{{ service = \"storage-replication\", protocols = [\"AMQP\"], transports = [\"UDT\"], capacity = {capacity}, unit = \"GB\" }}]\n",
        seed = spec.seed,
        steps = spec.steps,
    );
    let all: Vec<String> = (1..=roots)
        .map(|i| format!("root{i}.test"))
        .chain((1..=exchanges).map(|i| format!("exchange{i}.test")))
        .chain((1..=clouds).map(|i| format!("cloud{i}.test")))
        .collect();
    let mut d = Draw {
        rng,
        clouds: (1..=clouds).map(|i| format!("cloud{i}.test")).collect(),
        all,
        down: Vec::new(),
        partitioned: false,
        faulty: false,
        out,
        test_faults: spec.test_faults,
        sent: false,
    };
    if spec.test_faults {
        // First, on the healthy federation: warm-up stream, the fault, the
        // stream it must break (before any drawn fault can bounce it).
        d.messages();
    }
    for _ in 0..spec.steps {
        let kind = d.rng.gen_range(0..100);
        match kind {
            0..=34 => {
                d.messages();
            }
            35..=49 => d.link_fault(),
            50..=59 => d.partition(),
            60..=71 => d.kill_or_start(),
            72..=81 => d.heal(),
            _ if d.healthy() => d.healthy_step(&data),
            _ => {
                d.messages();
            }
        }
    }
    // A settled end: faults lifted, every node back, converged; then one
    // more stream on the healthy federation.
    d.heal();
    for node in std::mem::take(&mut d.down) {
        d.step(&format!("action = \"start\"\nnode = \"{node}\"\n"));
    }
    d.step("action = \"converge\"\nwithin_secs = 60\n");
    d.messages();
    d.out.push_str(
        "\n[invariants]\nroots_agree_within_secs = 30\nagreements_within_capacity = true\n",
    );
    d.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::model::Scenario;

    fn spec(seed: u64) -> FuzzSpec {
        FuzzSpec {
            seed,
            steps: 12,
            test_faults: false,
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_scenario_and_every_draw_is_valid() {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/data");
        let dir = std::env::temp_dir().join(format!("fuzz-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for seed in 0..200 {
            let a = generate(&spec(seed), &data);
            assert_eq!(a, generate(&spec(seed), &data));
            let f = dir.join(format!("{seed}.toml"));
            std::fs::write(&f, &a).unwrap();
            let s = Scenario::load(&f).unwrap_or_else(|e| panic!("seed {seed}: {e}\n{a}"));
            // It ends settled: healed, converged, a last stream.
            let n = s.steps.len();
            assert!(
                matches!(
                    s.steps[n - 1],
                    crate::scenario::model::Step::Messages { .. }
                ),
                "{a}"
            );
        }
        assert_ne!(generate(&spec(1), &data), generate(&spec(2), &data));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn test_faults_put_lose_acked_between_a_warm_up_stream_and_the_next() {
        let data = Path::new("/d");
        let t = generate(
            &FuzzSpec {
                test_faults: true,
                ..spec(3)
            },
            data,
        );
        // Warm-up stream, the fault, then the stream it breaks.
        let lose = t.find("lose_acked").expect("a lose_acked step");
        let streams: Vec<usize> = t
            .match_indices("action = \"messages\"")
            .map(|(i, _)| i)
            .collect();
        assert!(streams[0] < lose && lose < streams[1], "{t}");
    }
}
