//! HTTP callouts (`proxy_http_call`): what the guest asked for, and the answers a
//! test gives (`proxy_on_http_call_response`).

use std::time::Duration;

use crate::headers::Headers;

/// One `proxy_http_call` the guest made.
#[derive(Clone, Debug)]
pub struct Callout {
    pub token: u32,
    /// The VM (index in its host) and the context that owns the call: the
    /// effective one when it was made. A context's calls end with it
    /// (Envoy's C++ host makes every call on the root context).
    pub vm: u32,
    pub context_id: u32,
    /// The stream the guest was serving when it made the call: the context
    /// the host called into, or the last stream the guest made effective
    /// during that callback. `None` for calls made for the root alone.
    pub for_stream: Option<u32>,
    /// The cluster ("upstream") name.
    pub cluster: String,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
    pub timeout: Duration,
}

impl Callout {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How a callout ends.
#[derive(Clone, Debug)]
pub enum CalloutReply {
    /// The upstream answered.
    Response { status: u16, headers: Headers, body: Vec<u8>, trailers: Headers },
    /// The call failed (reset, timeout, no healthy upstream): Envoy calls back with
    /// no headers, no body, and `proxy_get_status` reporting `BrokenConnection`.
    Failure,
}

impl CalloutReply {
    pub fn ok(body: impl Into<Vec<u8>>) -> CalloutReply {
        CalloutReply::status(200, body)
    }

    pub fn status(status: u16, body: impl Into<Vec<u8>>) -> CalloutReply {
        CalloutReply::Response {
            status,
            headers: Headers::from_pairs([(":status", status.to_string())]),
            body: body.into(),
            trailers: Headers::new(),
        }
    }
}
