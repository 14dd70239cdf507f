//! The emails themselves: each job template rendered to a subject, a text part and an HTML part.
//!
//! Templates are Jinja (minijinja), compiled into the binary and parsed once at init, so a broken
//! template fails the function's init, not a send. Templates named `*.html` are HTML-escaped by
//! the engine: every value, an item called `<script>` included, is shown as text; the `*.txt`
//! parts are plain text. Undefined variables are errors, not empty strings.
//!
//! Values are prepared here, in Rust, before they reach a template: amounts formatted from minor
//! units with their currency's decimals, the reset link built from `APP_URL` with the token
//! percent-encoded, the expiry written out. Subjects are built here too and refused when they
//! would carry a control character (no CR/LF header injection, whatever the data says).

use minijinja::{Environment, UndefinedBehavior, Value, context};

use super::money::{Currency, InvalidCurrency};
use super::{EmailMessage, InvalidSubject, Subject};
use crate::email::{EmailAddress, EmailContent, EmailJob, OrderConfirmation, PasswordReset};

const SOURCES: &[(&str, &str)] = &[
    ("order_confirmation.txt", include_str!("templates/order_confirmation.txt")),
    ("order_confirmation.html", include_str!("templates/order_confirmation.html")),
    ("password_reset.txt", include_str!("templates/password_reset.txt")),
    ("password_reset.html", include_str!("templates/password_reset.html")),
];

/// The path of the reset page under `APP_URL`; the token goes in its `token` query parameter.
pub const RESET_PATH: &str = "/reset-password";

/// Why a job could not be rendered. Always permanent: the same job fails the same way again.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The job's currency is not a three-letter code.
    #[error(transparent)]
    Currency(#[from] InvalidCurrency),
    /// The subject would carry a control character or be empty or too long.
    #[error("the subject is unusable: {0}")]
    Subject(#[from] InvalidSubject),
    /// The line at this index (from 0) overflows `i64` minor units.
    #[error("line {0}: quantity times unit amount overflows")]
    Overflow(usize),
    /// The reset token is empty or over 512 bytes.
    #[error("the password reset token is empty or longer than 512 bytes")]
    Token,
    #[error("template {template}: {message}")]
    /// A template failed to parse or render (a build mistake, or data it did not expect).
    Template {
        /// The template's file name (`order_confirmation.html`, ...).
        template: String,
        /// minijinja's message.
        message: String,
    },
}

/// A base URL that links are built on: `http(s)://host[:port][/path]`, without query, fragment,
/// whitespace or a trailing slash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppUrl(String);

/// Why a text is not an [`AppUrl`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not an http(s) base URL without query or fragment")]
pub struct InvalidAppUrl;

impl AppUrl {
    /// Parses a base URL, dropping trailing slashes.
    pub fn parse(raw: &str) -> Result<Self, InvalidAppUrl> {
        let trimmed = raw.trim_end_matches('/');
        let rest = trimmed.strip_prefix("https://").or_else(|| trimmed.strip_prefix("http://")).ok_or(InvalidAppUrl)?;
        let host = rest.split('/').next().unwrap_or("");
        let ok = !host.is_empty()
            && !host.contains('@')
            && !trimmed.contains(['?', '#', '"', '<', '>', '\\'])
            && !trimmed.chars().any(|c| c.is_whitespace() || c.is_control());
        if ok { Ok(Self(trimmed.to_owned())) } else { Err(InvalidAppUrl) }
    }

    /// The base URL, without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Every template, parsed.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
    app_url: AppUrl,
}

impl Templates {
    /// Parses every template. Fails only when a template itself is broken (a build mistake).
    pub fn new(app_url: AppUrl) -> Result<Self, RenderError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        for (name, source) in SOURCES {
            env.add_template(name, source)
                .map_err(|e| RenderError::Template { template: (*name).to_owned(), message: e.to_string() })?;
        }
        Ok(Self { env, app_url })
    }

    /// The base URL links are built on (`APP_URL`).
    pub fn app_url(&self) -> &AppUrl {
        &self.app_url
    }

    /// The message for `job`, from `from`.
    pub fn render(&self, job: &EmailJob, from: &EmailAddress) -> Result<EmailMessage, RenderError> {
        let (subject, name, ctx) = match &job.content {
            EmailContent::OrderConfirmation(order) => (
                Subject::parse(&format!("Order {} confirmed", order.order_id))?,
                "order_confirmation",
                order_ctx(order)?,
            ),
            EmailContent::PasswordReset(reset) => {
                (Subject::parse("Reset your password")?, "password_reset", self.reset_ctx(reset)?)
            }
        };
        Ok(EmailMessage {
            from: from.clone(),
            to: job.to.clone(),
            subject,
            text: self.render_one(&format!("{name}.txt"), ctx.clone())?,
            html: self.render_one(&format!("{name}.html"), ctx)?,
            template: job.content.template(),
        })
    }

    fn render_one(&self, name: &str, ctx: Value) -> Result<String, RenderError> {
        let error = |e: minijinja::Error| RenderError::Template { template: name.to_owned(), message: e.to_string() };
        self.env.get_template(name).map_err(error)?.render(ctx).map_err(error)
    }

    fn reset_ctx(&self, reset: &PasswordReset) -> Result<Value, RenderError> {
        if reset.token.is_empty() || reset.token.len() > 512 {
            return Err(RenderError::Token);
        }
        let link = format!("{}{RESET_PATH}?token={}", self.app_url.as_str(), percent_encode(&reset.token));
        Ok(context! { link, expires_in => describe_minutes(reset.expires_in_minutes) })
    }
}

fn order_ctx(order: &OrderConfirmation) -> Result<Value, RenderError> {
    let currency = Currency::parse(&order.currency)?;
    let mut items = Vec::with_capacity(order.items.len());
    for (i, item) in order.items.iter().enumerate() {
        let line_total = item.unit_amount.checked_mul(i64::from(item.quantity)).ok_or(RenderError::Overflow(i))?;
        items.push(context! {
            name => item.name.clone(),
            quantity => item.quantity,
            unit_price => currency.format(item.unit_amount),
            line_total => currency.format(line_total),
        });
    }
    Ok(context! {
        order_id => order.order_id.clone(),
        items => Value::from_iter(items),
        total => currency.format(order.total),
    })
}

/// `30 minutes`, `1 hour`, `2 hours`, `90 minutes`, `1 day`.
fn describe_minutes(minutes: u32) -> String {
    let plural = |n: u32, unit: &str| if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") };
    match minutes {
        m if m >= 1440 && m % 1440 == 0 => plural(m / 1440, "day"),
        m if m >= 60 && m % 60 == 0 => plural(m / 60, "hour"),
        m => plural(m, "minute"),
    }
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn percent_encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::email::LineItem;

    fn templates() -> Templates {
        Templates::new(AppUrl::parse("https://app.example.com/").unwrap()).unwrap()
    }

    fn from() -> EmailAddress {
        EmailAddress::parse("shop@example.com").unwrap()
    }

    fn order(items: Vec<LineItem>, currency: &str, total: i64) -> EmailJob {
        EmailJob::order_confirmation(
            EmailAddress::parse("buyer@example.com").unwrap(),
            OrderConfirmation { order_id: "ord_1".into(), currency: currency.into(), items, total },
        )
        .unwrap()
    }

    fn item(name: &str, quantity: u32, unit_amount: i64) -> LineItem {
        LineItem { name: name.into(), quantity, unit_amount }
    }

    #[test]
    fn order_confirmation_lists_items_quantities_prices_and_total() {
        let job = order(vec![item("Mug", 2, 1250), item("Poster", 1, 999)], "eur", 3499);
        let m = templates().render(&job, &from()).unwrap();
        assert_eq!(m.subject.as_str(), "Order ord_1 confirmed");
        assert_eq!(
            (m.from.as_str(), m.to.as_str(), m.template),
            ("shop@example.com", "buyer@example.com", "order_confirmation")
        );
        assert!(m.text.contains("2 x Mug at EUR 12.50: EUR 25.00\n"), "{}", m.text);
        assert!(m.text.contains("1 x Poster at EUR 9.99: EUR 9.99\n"), "{}", m.text);
        assert!(m.text.contains("Total: EUR 34.99"), "{}", m.text);
        assert!(
            m.html.contains("<td>Mug</td><td align=\"right\">2</td><td align=\"right\">EUR 12.50</td>"),
            "{}",
            m.html
        );
        assert!(m.html.contains("EUR 34.99"), "{}", m.html);
    }

    #[test]
    fn zero_decimal_currencies_have_no_fraction() {
        let m = templates().render(&order(vec![item("Tea", 3, 500)], "jpy", 1500), &from()).unwrap();
        assert!(m.text.contains("3 x Tea at JPY 500: JPY 1,500"), "{}", m.text);
        assert!(m.text.contains("Total: JPY 1,500"), "{}", m.text);
    }

    #[test]
    fn html_escapes_every_value_and_text_keeps_it_verbatim() {
        let job = order(vec![item("<script>alert(1)</script>", 1, 100)], "usd", 100);
        let m = templates().render(&job, &from()).unwrap();
        assert!(!m.html.contains("<script>"), "{}", m.html);
        assert!(m.html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"), "{}", m.html);
        assert!(m.text.contains("1 x <script>alert(1)</script> at USD 1.00"), "{}", m.text);

        let mut job = order(vec![item("a\" onmouseover=\"x", 1, 1)], "usd", 1);
        if let EmailContent::OrderConfirmation(o) = &mut job.content {
            o.order_id = "<b>1</b>".into();
        }
        let m = templates().render(&job, &from()).unwrap();
        assert!(!m.html.contains("<b>1</b>") && !m.html.contains("\" onmouseover"), "{}", m.html);
    }

    #[test]
    fn subjects_never_carry_control_characters() {
        let mut job = order(vec![], "usd", 0);
        if let EmailContent::OrderConfirmation(o) = &mut job.content {
            o.order_id = "1\r\nBcc: victim@example.com".into();
        }
        assert!(matches!(templates().render(&job, &from()), Err(RenderError::Subject(_))));
    }

    #[test]
    fn bad_amounts_and_currencies_are_refused() {
        let t = templates();
        assert!(matches!(t.render(&order(vec![], "euro", 0), &from()), Err(RenderError::Currency(_))));
        let huge = order(vec![item("x", 3, i64::MAX / 2)], "usd", 0);
        assert_eq!(t.render(&huge, &from()), Err(RenderError::Overflow(0)));
    }

    #[test]
    fn password_reset_links_to_app_url_and_says_when_it_expires() {
        let job = EmailJob::new(
            EmailAddress::parse("user@example.com").unwrap(),
            EmailContent::PasswordReset(PasswordReset { token: "a b&c/d".into(), expires_in_minutes: 60 }),
            "reset:1".into(),
        )
        .unwrap();
        let m = templates().render(&job, &from()).unwrap();
        assert_eq!(m.subject.as_str(), "Reset your password");
        assert!(m.text.contains("https://app.example.com/reset-password?token=a%20b%26c%2Fd\n"), "{}", m.text);
        assert!(m.text.contains("expires in 1 hour."), "{}", m.text);
        // In HTML the link is an attribute value, entity-escaped ("/" becomes &#x2f;).
        assert!(
            m.html.contains("href=\"https:&#x2f;&#x2f;app.example.com&#x2f;reset-password?token=a%20b%26c%2Fd\""),
            "{}",
            m.html
        );

        let empty = EmailJob::new(
            EmailAddress::parse("user@example.com").unwrap(),
            EmailContent::PasswordReset(PasswordReset { token: String::new(), expires_in_minutes: 30 }),
            "reset:2".into(),
        )
        .unwrap();
        assert_eq!(templates().render(&empty, &from()), Err(RenderError::Token));
    }

    #[test]
    fn expiry_is_written_out() {
        assert_eq!(describe_minutes(1), "1 minute");
        assert_eq!(describe_minutes(30), "30 minutes");
        assert_eq!(describe_minutes(90), "90 minutes");
        assert_eq!(describe_minutes(120), "2 hours");
        assert_eq!(describe_minutes(1440), "1 day");
    }

    #[test]
    fn app_urls_are_checked() {
        assert_eq!(AppUrl::parse("https://app.example.com/").unwrap().as_str(), "https://app.example.com");
        assert_eq!(AppUrl::parse("http://127.0.0.1:5173/shop").unwrap().as_str(), "http://127.0.0.1:5173/shop");
        for bad in [
            "",
            "app.example.com",
            "ftp://x",
            "https://",
            "https://a.com/?x=1",
            "https://a.com/#f",
            "https://a b.com",
            "https://u@a.com",
        ] {
            assert!(AppUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
