//! The admin listener: `/healthz`, `/readyz`, `/metrics`, the WeChat API relay
//! (`/wechat/...`) and the session and user endpoints, never on the public port.

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::body::{self, ResBody};
use crate::error::{json_response, respond, GatewayError};
use crate::gateway::Gateway;

pub(crate) async fn handle(gateway: &Gateway, request: Request<Incoming>) -> Response<ResBody> {
    if request.uri().path().starts_with(crate::ops::relay::PREFIX) {
        return crate::ops::relay::handle(gateway, request).await;
    }
    if super::sessions::serves(request.uri().path()) {
        return super::sessions::handle(gateway, request).await;
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return respond(GatewayError::MethodNotAllowed(vec![Method::GET]));
    }
    match request.uri().path() {
        "/healthz" => json_response(StatusCode::OK, &json!({ "status": "ok" })),
        "/readyz" => {
            if gateway.store.ping().await {
                json_response(StatusCode::OK, &json!({ "status": "ready" }))
            } else {
                json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({ "status": "unavailable", "store": "unreachable" }),
                )
            }
        }
        "/metrics" => {
            let mut response = Response::new(body::full(crate::ops::metrics::render()));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(crate::ops::metrics::CONTENT_TYPE),
            );
            response
        }
        _ => respond(GatewayError::NoRoute),
    }
}
