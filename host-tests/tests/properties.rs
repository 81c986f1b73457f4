//! Properties: set by the test (host-wide or per request), derived, or by the guest.

use crate::util::echo_host;

fn property(vm: &host_tests::Vm, path: &str) -> Option<String> {
    let r = vm
        .request()
        .path("/v1/things?x=1")
        .header("x-echo-action", "property")
        .header("x-echo-property", path)
        .property(&["metadata", "tier"], "pro")
        .send();
    r.assert_allowed();
    r.upstream_header("x-echo-property-value").map(str::to_string)
}

#[test]
fn properties_come_from_the_request_the_host_and_the_stream() {
    let host = echo_host();
    host.set_property(&["node", "id"], "edge-1");
    let vm = host.vm_builder().root_id("quota-root").plugin_config("{}").start().unwrap();
    assert_eq!(property(&vm, "node.id").as_deref(), Some("edge-1"));
    assert_eq!(property(&vm, "metadata.tier").as_deref(), Some("pro"));
    assert_eq!(property(&vm, "request.url_path").as_deref(), Some("/v1/things"));
    assert_eq!(property(&vm, "request.method").as_deref(), Some("GET"));
    assert_eq!(property(&vm, "plugin_root_id").as_deref(), Some("quota-root"));
    assert_eq!(property(&vm, "nothing.here").as_deref(), Some(""));
}

#[test]
fn properties_the_guest_sets_are_recorded_per_stream() {
    let host = echo_host();
    let vm = host.vm("{}").unwrap();
    let r = vm.request().header("x-echo-action", "property").send();
    assert_eq!(r.record().properties_set, vec![(vec!["echo".to_string(), "seen".to_string()], b"1".to_vec())]);
}
