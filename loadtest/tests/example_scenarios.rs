//! Every example scenario in `configs/loadtest/` parses, passes its checks and plans calls, so the documented
//! commands work as written.

use hualu_loadtest::plan::plan;
use hualu_loadtest::scenario::Scenario;
use std::path::Path;

#[test]
fn every_example_scenario_loads_and_plans_calls() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/loadtest");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("configs/loadtest") {
        let path = entry.expect("an entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let s = Scenario::load(&path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let p = plan(&s);
        assert!(!p.calls.is_empty(), "{} plans no call", path.display());
        assert_eq!(p.skipped, 0, "{}: arrivals found no free user", path.display());
        names.push(s.name);
    }
    names.sort();
    assert_eq!(names, ["3g", "capacity", "cluster", "handover", "smoke"]);
}
