//! Delivery in, verified event, claim, effects, answer out.
//!
//! 1. POST only (405); a body over 1 MiB is refused (413) before any work.
//! 2. The raw body (lambda_http has already decoded `isBase64Encoded`) is verified against
//!    `Stripe-Signature`; every refusal is a precise 400.
//! 3. Types we do not handle are acknowledged (200) and logged, without a claim.
//! 4. The event id is claimed in the idempotency table until this invocation's deadline:
//!    a COMPLETED record → 200 `{"received":true,"duplicate":true}`; a live INPROGRESS one → 409.
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
use shared::idempotency::{Claim, IdempotencyStore};
use shared::payments::{CancelSubscription, MarkPaid, Order, OrderId, OrdersRepo, Payment, SubscriptionsRepo};
use shared::payments::{Event, Handled, PaymentIntent, SIGNATURE_HEADER, SignatureError, Subscription, Verifier};

use crate::error::WebhookError;
use crate::settings::Settings;

/// Largest body accepted: Stripe's events are a few KB; a body this size is not one of them.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long a claim is held when there is no Lambda deadline to go by (the handler called
/// outside a Lambda runtime, as tests do): the template's function timeout.
pub const CLAIM_WITHOUT_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct State {
    pub verifier: Verifier,
    pub idempotency: IdempotencyStore,
    pub orders: OrdersRepo,
    pub subscriptions: SubscriptionsRepo,
    pub email: EmailQueue,
}

impl State {
    pub fn new(settings: &Settings, aws: &AwsClients) -> Self {
        Self {
            verifier: Verifier::new(&settings.verifier),
            idempotency: IdempotencyStore::new(aws.dynamodb.clone(), &settings.idempotency),
            orders: OrdersRepo::new(aws.dynamodb.clone(), &settings.orders_table),
            subscriptions: SubscriptionsRepo::new(aws.dynamodb.clone(), &settings.subscriptions_table),
            email: EmailQueue::new(aws.sqs.clone(), &settings.email_queue_url),
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
    let event = Event::parse(body)?;
    if verified.secret_index > 0 {
        let secret_index = verified.secret_index;
        tracing::info!(event_id = %event.id, secret_index, "verified with a secret other than the first");
    }
    let deadline_ms = match req.lambda_context_ref() {
        Some(context) => Deadline::from_epoch_ms(context.deadline).epoch_ms,
        None => now + CLAIM_WITHOUT_DEADLINE.as_millis() as i64,
    };
    // No span of our own: the runtime's span is what carries the request id on every line, so
    // each line names the event itself.
    process(state, &event, deadline_ms).await
}

/// Claim, effects, complete or release.
async fn process(state: &State, event: &Event, deadline_ms: i64) -> Result<Response<Body>, WebhookError> {
    let (id, kind) = (event.id.as_str(), event.kind.as_str());
    let handled = event.handled()?;
    if handled == Handled::Ignored {
        tracing::info!(event_id = id, event_type = kind, "event type not handled; acknowledged");
        return Ok(received(false));
    }
    let claim = match state.idempotency.claim(&event.id, deadline_ms).await? {
        Claim::Acquired(claim) => claim,
        Claim::Completed => {
            tracing::info!(event_id = id, event_type = kind, "duplicate delivery; already processed");
            return Ok(received(true));
        }
        Claim::InProgress(busy) => {
            tracing::info!(event_id = id, until_ms = busy.until_ms, "event is being processed by another delivery");
            return Err(busy.into());
        }
    };

    match apply(state, event, handled).await {
        Ok(()) => {
            if let Err(e) = state.idempotency.complete(&claim).await {
                // The effects are done; a redelivery after the claim lapses repeats only safe steps.
                tracing::error!(event_id = id, error = %e, "could not mark the event completed");
            }
            tracing::info!(event_id = id, event_type = kind, "event processed");
            Ok(received(false))
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
