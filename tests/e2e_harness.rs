//! Checks of the end-to-end harness itself: parsing uclient's output and Prometheus text, and port blocks.
//! The samples are real `turnutils_uclient` 4.6.1 output.

mod common;

use common::http::{metric_sum, parse_response};
use common::ports::{PortBlock, Service};
use common::tools::{error_codes, Summary};

const SUCCESS: &str = "\
0: : Total connect time is 2
3: : start_mclient: msz=20, tot_send_msgs=169, tot_recv_msgs=168, tot_send_bytes ~ 27040, tot_recv_bytes ~ 26880
6: : start_mclient: tot_send_msgs=1000, tot_recv_msgs=998
6: : start_mclient: tot_send_bytes ~ 160000, tot_recv_bytes ~ 159680
6: : Total transmit time is 6
6: : Total lost packets 2 (0.200000%), total send dropped 1 (0.100000%)
6: : Average round trip delay 0.026000 ms; min = 0 ms, max = 7 ms
";

#[test]
fn summary_is_the_final_totals_not_a_progress_line() {
    let summary = Summary::parse(SUCCESS).expect("a summary");
    assert_eq!(
        summary,
        Summary {
            sent: 1000,
            received: 998,
            lost: 2,
            send_dropped: 1
        }
    );
}

#[test]
fn refusals_have_error_codes_and_no_summary() {
    let quota = "0: : error 486 (Allocation Quota Reached)\n0: : error 486 (Allocation Quota Reached)\n";
    let denied = "0: : channel bind: error 403 (Forbidden IP)\n0: : create permission error 403 (Forbidden IP)\n";
    let unauthorized =
        "0: : allocate sent\n0: : allocate response received: \n0: : ERROR: Cannot complete Allocation\n";
    assert_eq!(error_codes(quota), [486, 486]);
    assert_eq!(error_codes(denied), [403, 403]);
    assert!(error_codes(unauthorized).is_empty());
    assert!(Summary::parse(quota).is_none());
}

#[test]
fn metrics_are_summed_over_matching_series() {
    let text = "# TYPE x_total counter\nx_total{result=\"ok\",t=\"udp\"} 3\nx_total{result=\"ok\",t=\"tcp\"} 4\n\
                x_total{result=\"quota\"} 1\ny 9\n";
    assert_eq!(metric_sum(text, "x_total", &[("result", "ok")]), Some(7.0));
    assert_eq!(
        metric_sum(text, "x_total", &[("result", "ok"), ("t", "tcp")]),
        Some(4.0)
    );
    assert_eq!(metric_sum(text, "x_total", &[]), Some(8.0));
    assert_eq!(metric_sum(text, "y", &[]), Some(9.0));
    assert_eq!(metric_sum(text, "x", &[]), None);
}

#[test]
fn http_answers_are_split_into_status_and_body() {
    let response = parse_response("HTTP/1.1 503 Service Unavailable\r\nx: y\r\n\r\ndraining").expect("a response");
    assert_eq!((response.status, response.body.as_str()), (503, "draining"));
    assert!(parse_response("garbage").is_none());
}

#[test]
fn port_blocks_held_at_once_do_not_overlap() {
    let a = PortBlock::claim();
    let b = PortBlock::claim();
    let (a_min, a_max) = a.relay_range();
    let (b_min, b_max) = b.relay_range();
    assert!(a_max < b_min || b_max < a_min, "relay ranges overlap");
    assert_ne!(a.port(Service::Turn), b.port(Service::Turn));
    assert!(
        a.port(Service::Peer) + 1 < a_min,
        "the peer's RTCP port is inside the relay range"
    );
}

#[test]
fn generated_config_has_the_spec() {
    use common::server::hualu_toml;
    let block = PortBlock::claim();
    let spec = common::ServerSpec {
        max_allocations_per_user: Some(2),
        allow_loopback_peers: false,
        ..common::ServerSpec::default().rest_secret("s3cret-s3cret-s3cret").tls()
    };
    let toml = hualu_toml(&spec, &block);
    let (min, max) = block.relay_range();
    for line in [
        "dev = true".to_string(),
        format!("udp_port = {}", block.port(Service::Turn)),
        format!("tls_port = {}", block.port(Service::Tls)),
        format!("min_port = {min}"),
        format!("max_port = {max}"),
        "allow_peers = []".to_string(),
        "rest_secrets = [\"s3cret-s3cret-s3cret\"]".to_string(),
        format!("{} = \"{}\"", common::USER, common::PASSWORD),
        "max_allocations_per_user = 2".to_string(),
    ] {
        assert!(toml.lines().any(|l| l == line), "{line:?} missing from\n{toml}");
    }
    assert!(!toml.contains("max_allocations = "), "unset quotas keep the defaults");
}
