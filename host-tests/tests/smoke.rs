//! The real quota filter loads in the test host (skipped until it is built).

use host_tests::HostError;

#[test]
fn the_quota_filter_loads_and_answers_configure_without_trapping() {
    let Some(host) = crate::util::quota_host_if_built() else { return };
    match host.vm("{}") {
        Ok(vm) => {
            assert!(!vm.is_dead());
            assert!(vm.unimplemented_calls().is_empty(), "{:?}", vm.unimplemented_calls());
        }
        // An empty configuration may well be refused; that must be a clean `false`.
        Err(HostError::ConfigRejected { logs }) => {
            assert!(!logs.is_empty(), "a rejected config must say why in the log");
        }
        Err(other) => panic!("the quota filter failed to start: {other}"),
    }
}
