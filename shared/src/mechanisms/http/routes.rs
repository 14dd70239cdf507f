//! A function's route table: the methods and path templates it serves, as `template.yaml`
//! declares them (the table is checked against the template and the `cargo lambda watch`
//! router by `tools/e2e/tests/routes.rs`). Dispatch, 404 and 405 with its `Allow` header all
//! come from the one table, so no handler types an `Allow` string by hand.

use http::Method;
use lambda_http::Request;

use super::{Problem, path_segments};

/// One route: a method, a path template (`/posts/{id}`: a `{name}` segment matches any one
/// segment) and what the handler does for it.
#[derive(Debug)]
pub struct Route<Op: 'static> {
    /// The HTTP method this route answers.
    pub method: Method,
    /// The path template, exactly as `template.yaml` writes it.
    pub path: &'static str,
    /// The handler's name for the route, matched on after [`Routes::find`].
    pub op: Op,
}

/// A matched request: the route's operation and the values of its `{…}` segments, in order.
#[derive(Debug, PartialEq, Eq)]
pub struct Matched<'r, Op> {
    /// The operation of the matched route.
    pub op: Op,
    /// The path parameters, in the order the template names them.
    pub params: Vec<&'r str>,
}

/// Every route of one function.
#[derive(Debug)]
pub struct Routes<Op: 'static>(pub &'static [Route<Op>]);

impl<Op: Copy + 'static> Routes<Op> {
    /// The route for this request; 405 with an `Allow` of the path's methods (and `OPTIONS`,
    /// the CORS preflight) when the path is known but the method is not, 404 otherwise.
    pub fn find<'r>(&self, req: &'r Request) -> Result<Matched<'r, Op>, Problem> {
        let segments = path_segments(req);
        let mut allowed: Vec<&str> = Vec::new();
        for route in self.0 {
            let Some(params) = match_template(route.path, &segments) else { continue };
            if route.method == req.method() {
                return Ok(Matched { op: route.op, params });
            }
            if !allowed.contains(&route.method.as_str()) {
                allowed.push(route.method.as_str());
            }
        }
        if allowed.is_empty() {
            return Err(Problem::not_found("no such route"));
        }
        allowed.push("OPTIONS");
        Err(Problem::method_not_allowed(&allowed.join(", ")))
    }

    /// `(method, path template)` of every route, for the checks against the template.
    pub fn pairs(&self) -> Vec<(&'static str, &'static str)> {
        let table: &'static [Route<Op>] = self.0;
        table.iter().map(|r| (r.method.as_str(), r.path)).collect()
    }
}

/// The `{…}` values when `segments` end with the template's segments. Only the end is compared,
/// as the handlers always did: a stage or base-path prefix in front of the API's paths is allowed.
fn match_template<'r>(template: &str, segments: &[&'r str]) -> Option<Vec<&'r str>> {
    let parts: Vec<&str> = template.split('/').filter(|s| !s.is_empty()).collect();
    if segments.len() < parts.len() {
        return None;
    }
    let tail = &segments[segments.len() - parts.len()..];
    let mut params = Vec::new();
    for (part, segment) in parts.iter().zip(tail) {
        if part.starts_with('{') && part.ends_with('}') {
            params.push(*segment);
        } else if part != segment {
            return None;
        }
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use lambda_http::Body;

    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Op {
        List,
        Get,
        Update,
    }

    const ROUTES: Routes<Op> = Routes(&[
        Route { method: Method::GET, path: "/posts", op: Op::List },
        Route { method: Method::GET, path: "/posts/{id}", op: Op::Get },
        Route { method: Method::PATCH, path: "/posts/{id}", op: Op::Update },
    ]);

    fn request(method: &str, path: &str) -> Request {
        http::Request::builder().method(method).uri(path).body(Body::Empty).unwrap()
    }

    #[test]
    fn dispatches_with_params_and_refuses_from_the_table() {
        assert_eq!(ROUTES.find(&request("GET", "/posts")).unwrap(), Matched { op: Op::List, params: vec![] });
        assert_eq!(ROUTES.find(&request("PATCH", "/posts/7/")).unwrap(), Matched { op: Op::Update, params: vec!["7"] });

        let refused = ROUTES.find(&request("DELETE", "/posts/7")).unwrap_err();
        assert_eq!(refused.status, 405);
        let allow = refused.headers.iter().find(|(n, _)| n == http::header::ALLOW).map(|(_, v)| v.clone());
        assert_eq!(allow.unwrap(), "GET, PATCH, OPTIONS");

        assert_eq!(ROUTES.find(&request("GET", "/nothing")).unwrap_err().status, 404);
        assert_eq!(ROUTES.find(&request("GET", "/posts/7/comments")).unwrap_err().status, 404);
    }
}
