//! Delivery in, verified event, claim, effects, answer out.
//!
//! 1. POST only (405); a body over 1 MiB is refused (413) before any work.
//! 2. The raw body (lambda_http has already decoded `isBase64Encoded`) is verified against
//!    `Stripe-Signature`; every refusal is a precise 400.
//! 3. Types we do not handle are acknowledged (200) and logged, without a claim.
//! 4. The event id is claimed in the idempotency table until this invocation's deadline, with a
//!    fingerprint of what must not change between deliveries (a snapshot's type, creation time
//!    and `data`; a thin event's type, creation time and related object): a COMPLETED record →
//!    200 `{"received":true,"duplicate":true}`; a live INPROGRESS one → 409; a record of the id
//!    with another fingerprint → 409 `event-payload-mismatch` and an error in the log.
//!
//!    A thin event (`"object": "v2.core.event"`, an event destination's notification) is
//!    fetched only now, by the one delivery holding the claim: `GET /v2/core/events/{id}`, then
//!    its `related_object`, through `shared::outbound` (shared::payments::thin). The effects
//!    are then the same as for the snapshot event of the same v1 type.
//! 5. Effects run; success → record COMPLETED, 200. Failure → record deleted, 500, and Stripe
//!    retries. Every effect is safe to repeat after a partial failure: the order update is
//!    conditional (a retry finds the order paid by this same PaymentIntent and goes on), and the
//!    email job's idempotency key is the order's, so email-sender sends it once.
//!
//! An order that does not exist, is not pending, or does not match the payment is acknowledged
//! with a warning or error in the log, not retried: retrying for days would not change it.

use std::time::Duration;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;
use shared::clients::AwsClients;
use shared::clock::now_ms;
use shared::deadline::Deadline;
use shared::email::{EmailAddress, EmailJob, EmailQueue, LineItem, OrderConfirmation};
use shared::http::{self, Problem};
use shared::idempotency::{Claim, Fingerprint, IdempotencyStore};
use shared::payments::{CancelSubscription, MarkPaid, Order, OrderId, OrdersRepo, Payment, SubscriptionsRepo};
use shared::payments::{Event, Handled, PaymentIntent, SIGNATURE_HEADER, SignatureError, Subscription, Verifier};
use shared::payments::{StripeApi, ThinEvent};

use crate::error::WebhookError;
use crate::settings::Settings;

/// The counters this function emits (their names are read by tests/template; see `shared::metrics::Metric`).
mod metric {
    use shared::metrics::Metric;

    /// Every delivery, by event type and outcome.
    pub const EVENTS: Metric = "WebhookEvents";
    /// Every delivery, by outcome only (processed, duplicate, ignored, in_progress,
    /// payload_mismatch, failed): what the alarms read.
    pub const OUTCOMES: Metric = "WebhookOutcomes";
}

/// Largest body accepted: Stripe's events are a few KB; a body this size is not one of them.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long a claim is held when there is no Lambda deadline to go by (the handler called
/// outside a Lambda runtime, as tests do): the template's function timeout.
pub const CLAIM_WITHOUT_DEADLINE: Duration = Duration::from_secs(10);
/// The Stripe API reads of a thin event end this long before the deadline, leaving time for the
/// effects and the answer.
pub const FETCH_RESERVE: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub struct State {
    pub verifier: Verifier,
    pub idempotency: IdempotencyStore,
    pub orders: OrdersRepo,
    pub subscriptions: SubscriptionsRepo,
    pub email: EmailQueue,
    pub stripe: StripeApi,
}

impl State {
    pub fn new(settings: &Settings, aws: &AwsClients) -> Self {
        Self {
            verifier: Verifier::new(&settings.verifier),
            idempotency: IdempotencyStore::new(aws.dynamodb().clone(), &settings.idempotency),
            orders: OrdersRepo::new(aws.dynamodb().clone(), &settings.orders_table),
            subscriptions: SubscriptionsRepo::new(aws.dynamodb().clone(), &settings.subscriptions_table),
            email: EmailQueue::new(aws.sqs().clone(), &settings.email_queue_url),
            stripe: StripeApi::new(&settings.stripe_api),
        }
    }
}

impl shared::runtime::Function for State {
    type Settings = Settings;

    async fn init(settings: &Settings) -> Result<Self, lambda_http::Error> {
        Ok(Self::new(settings, &AwsClients::load(false).await))
    }
}

pub async fn handle(state: &State, req: Request) -> Response<Body> {
    deliver(state, &req).await.unwrap_or_else(|e| Problem::from(e).to_response())
}

fn received(duplicate: bool) -> Response<Body> {
    let body = if duplicate { json!({"received": true, "duplicate": true}) } else { json!({"received": true}) };
    http::json(StatusCode::OK, &body)
}

async fn deliver(state: &State, req: &Request) -> Result<Response<Body>, WebhookError> {
    if req.method() != Method::POST {
        return Err(Problem::method_not_allowed("POST").into());
    }
    let body = http::body_bytes(req);
    if body.len() > MAX_BODY_BYTES {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Request body too large",
            format!("the body is {} bytes; the limit is {MAX_BODY_BYTES}", body.len()),
        )
        .into());
    }
    let header = match req.headers().get(SIGNATURE_HEADER) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| SignatureError::Malformed("not ASCII"))?),
    };
    let now = now_ms();
    let verified = state.verifier.verify(header, body, now / 1000).inspect_err(|e| {
        tracing::warn!(error = %e, "delivery refused");
    })?;
    let deadline = match req.lambda_context_ref() {
        Some(context) => Deadline::from_epoch_ms(context.deadline),
        None => Deadline::after(CLAIM_WITHOUT_DEADLINE),
    };
    let delivery = if shared::payments::is_thin(body) {
        Delivery::Thin(ThinEvent::parse(body)?)
    } else {
        Delivery::Snapshot(Event::parse(body)?)
    };
    if verified.secret_index > 0 {
        let secret_index = verified.secret_index;
        tracing::info!(event_id = delivery.id(), secret_index, "verified with a secret other than the first");
    }
    // No span of our own: the runtime's span is what carries the request id on every line, so
    // each line names the event itself.
    let kind = delivery.kind().to_owned();
    let result = process(state, &delivery, deadline).await;
    let outcome = match &result {
        Ok(Outcome::Processed) => "processed",
        Ok(Outcome::Duplicate) => "duplicate",
        Ok(Outcome::Ignored) => "ignored",
        Err(WebhookError::InProgress(_)) => "in_progress",
        Err(WebhookError::Idempotency(shared::idempotency::IdempotencyError::PayloadMismatch { .. })) => {
            "payload_mismatch"
        }
        Err(_) => "failed",
    };
    shared::metrics::count_by(metric::EVENTS, &[("event_type", &kind), ("outcome", outcome)], 1);
    // The same outcome without the event type: the alarms on failed and payload_mismatch read
    // this one (an alarm reads one dimension set, and event types are open-ended).
    shared::metrics::count_by(metric::OUTCOMES, &[("outcome", outcome)], 1);
    result.map(|outcome| received(outcome == Outcome::Duplicate))
}

/// What was delivered: a snapshot event, or a thin notification whose event is fetched.
enum Delivery {
    Snapshot(Event),
    Thin(ThinEvent),
}

impl Delivery {
    fn id(&self) -> &str {
        match self {
            Delivery::Snapshot(e) => &e.id,
            Delivery::Thin(e) => &e.id,
        }
    }

    fn kind(&self) -> &str {
        match self {
            Delivery::Snapshot(e) => &e.kind,
            Delivery::Thin(e) => &e.kind,
        }
    }

    /// Whether the type is one we act on (decided before any claim or fetch).
    fn handled_type(&self) -> bool {
        let snapshot_type = match self {
            Delivery::Snapshot(e) => Some(e.kind.as_str()),
            Delivery::Thin(e) => e.v1_type(),
        };
        snapshot_type.is_some_and(|t| shared::payments::HANDLED_TYPES.contains(&t))
    }

    /// What must not change between two deliveries of the id.
    fn fingerprint(&self) -> Fingerprint {
        match self {
            Delivery::Snapshot(e) => {
                // `pending_webhooks` and `request` may differ between deliveries; these do not.
                let canonical = json!([e.id, e.kind, e.created, e.livemode, e.data.object]);
                Fingerprint::of(canonical.to_string().as_bytes())
            }
            Delivery::Thin(e) => e.fingerprint(),
        }
    }
}

/// A delivery answered 200.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Processed,
    Duplicate,
    Ignored,
}

/// Claim, (fetch,) effects, complete or release.
async fn process(state: &State, delivery: &Delivery, deadline: Deadline) -> Result<Outcome, WebhookError> {
    let (id, kind) = (delivery.id(), delivery.kind());
    if !delivery.handled_type() {
        tracing::info!(event_id = id, event_type = kind, "event type not handled; acknowledged");
        return Ok(Outcome::Ignored);
    }
    let fingerprint = delivery.fingerprint();
    let claim = match state.idempotency.claim_payload(id, &fingerprint, deadline.epoch_ms).await? {
        Claim::Acquired(claim) => claim,
        Claim::Completed => {
            tracing::info!(event_id = id, event_type = kind, replay = true, "duplicate delivery; already processed");
            return Ok(Outcome::Duplicate);
        }
        Claim::InProgress(busy) => {
            tracing::info!(
                event_id = id,
                replay = true,
                until_ms = busy.until_ms,
                "event is being processed by another delivery"
            );
            return Err(busy.into());
        }
    };

    match resolve_and_apply(state, delivery, deadline).await {
        Ok(()) => {
            if let Err(e) = state.idempotency.complete(&claim).await {
                // The effects are done; a redelivery after the claim lapses repeats only safe steps.
                tracing::error!(event_id = id, error = %e, "could not mark the event completed");
            }
            tracing::info!(event_id = id, event_type = kind, replay = false, "event processed");
            Ok(Outcome::Processed)
        }
        Err(failure) => {
            if let Err(e) = state.idempotency.release(&claim).await {
                tracing::error!(event_id = id, error = %e, "could not release the claim; it lapses at its deadline");
            }
            tracing::warn!(event_id = id, event_type = kind, "processing failed; claim released for a retry");
            Err(failure)
        }
    }
}

/// The snapshot event to act on (a thin event's is fetched now, by the claim's holder), then its
/// effects.
async fn resolve_and_apply(state: &State, delivery: &Delivery, deadline: Deadline) -> Result<(), WebhookError> {
    let fetched;
    let event = match delivery {
        Delivery::Snapshot(event) => event,
        Delivery::Thin(notification) => {
            // Keep time to record the outcome and answer after the reads.
            let read_by = deadline.at.checked_sub(FETCH_RESERVE).unwrap_or(deadline.at);
            let event = state.stripe.event(&notification.id, read_by).await?;
            let Some(related) = &event.related_object else {
                tracing::warn!(event_id = %event.id, "thin event has no related object; acknowledged");
                return Ok(());
            };
            let object = state.stripe.related_object(related, read_by).await?;
            tracing::info!(event_id = %event.id, object = %related.id, "thin event fetched");
            fetched = event.to_snapshot(object);
            &fetched
        }
    };
    let handled = event.handled()?;
    apply(state, event, handled).await
}

async fn apply(state: &State, event: &Event, handled: Handled) -> Result<(), WebhookError> {
    match handled {
        Handled::PaymentSucceeded(intent) => payment_succeeded(state, &intent).await,
        Handled::SubscriptionDeleted(subscription) => subscription_deleted(state, event, &subscription).await,
        Handled::Ignored => Ok(()),
    }
}

async fn payment_succeeded(state: &State, intent: &PaymentIntent) -> Result<(), WebhookError> {
    let Some(raw_id) = intent.order_id() else {
        tracing::warn!(payment_intent = %intent.id, "payment has no metadata.orderId; acknowledged");
        return Ok(());
    };
    let Ok(order_id) = OrderId::parse(raw_id) else {
        tracing::warn!(payment_intent = %intent.id, "metadata.orderId is not a valid order id; acknowledged");
        return Ok(());
    };
    let payment =
        Payment { intent_id: intent.id.clone(), amount: intent.received(), currency: intent.currency.clone() };
    let order = match state.orders.mark_paid(&order_id, &payment).await? {
        MarkPaid::Paid(order) => {
            tracing::info!(order_id = %order_id, payment_intent = %intent.id, "order marked paid");
            order
        }
        MarkPaid::AlreadyPaidByThisPayment(order) => {
            tracing::info!(order_id = %order_id, "order already paid by this payment; finishing an earlier attempt");
            order
        }
        MarkPaid::NotFound => {
            tracing::warn!(order_id = %order_id, payment_intent = %intent.id, "order does not exist; acknowledged, not retried");
            return Ok(());
        }
        MarkPaid::NotPending(order) => {
            tracing::warn!(
                order_id = %order_id,
                status = order.status.as_str(),
                paid_by = order.payment_intent_id.as_deref().unwrap_or(""),
                payment_intent = %intent.id,
                "order is not pending; acknowledged, not retried"
            );
            return Ok(());
        }
        MarkPaid::AmountMismatch(order) => {
            tracing::error!(
                order_id = %order_id,
                expected = order.total,
                expected_currency = %order.currency,
                received = payment.amount,
                currency = %payment.currency,
                "payment does not match the order; order left pending, acknowledged"
            );
            return Ok(());
        }
    };
    queue_confirmation(state, &order).await
}

async fn queue_confirmation(state: &State, order: &Order) -> Result<(), WebhookError> {
    let Ok(to) = EmailAddress::parse(&order.email) else {
        tracing::error!(order_id = %order.id, "order has an invalid email address; no confirmation sent");
        return Ok(());
    };
    let data = OrderConfirmation {
        order_id: order.id.as_str().to_owned(),
        currency: order.currency.clone(),
        items: order
            .items
            .iter()
            .map(|i| LineItem { name: i.name.clone(), quantity: i.quantity, unit_amount: i.unit_amount })
            .collect(),
        total: order.total,
    };
    let job = EmailJob::order_confirmation(to, data).map_err(|e| {
        tracing::error!(error = %e, "could not build the confirmation job");
        WebhookError::Internal
    })?;
    let message_id = state.email.send(&job).await?;
    tracing::info!(order_id = %order.id, message_id, key = %job.idempotency_key, "order confirmation queued");
    Ok(())
}

async fn subscription_deleted(state: &State, event: &Event, subscription: &Subscription) -> Result<(), WebhookError> {
    let at = subscription.canceled_at.or(subscription.ended_at).or(event.created);
    match state.subscriptions.cancel(&subscription.id, at).await? {
        CancelSubscription::Canceled => tracing::info!(subscription = %subscription.id, "subscription canceled"),
        CancelSubscription::NotFound => {
            tracing::warn!(subscription = %subscription.id, "subscription does not exist; acknowledged, not retried")
        }
    }
    Ok(())
}
