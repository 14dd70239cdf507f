//! Lambda entry point: settings and state built once ([`State`]'s `Function` impl), then
//! every invocation served by [`handle`].

use posts_read::handler::{State, handle};

fn main() -> Result<(), lambda_http::Error> {
    shared::runtime::run_http::<State, _, _>(handle)
}
