//! Orders and subscriptions, in DynamoDB, as payment events change them.
//!
//! Table `Orders`, key `id` (S): the order id the checkout puts in the PaymentIntent's
//! `metadata.orderId`. An order is created `pending` with its items, total (integer minor units)
//! and lowercase ISO 4217 currency, and becomes `paid` exactly once, by one conditional update
//! that also checks the amount and currency; a refused update reads the old item
//! (`ReturnValuesOnConditionCheckFailure = ALL_OLD`) to say why, without a second read.
//!
//! Table `Subscriptions`, key `id` (S): the Stripe subscription id; `status` becomes `canceled`
//! when Stripe says the subscription was deleted.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use serde::{Deserialize, Serialize};

use crate::clients::dynamo::{self, DynamoError};
use crate::clock::timestamp_now;

crate::id::define_id!(
    /// An order id ([`crate::id`]), as the checkout put it in the PaymentIntent's metadata.
    OrderId,
    InvalidOrderId,
    "an order id"
);

/// Where an order is in its life: created `pending`, then `paid` once, or `canceled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Created by the checkout, waiting for its payment.
    Pending,
    /// Paid by the PaymentIntent in `payment_intent_id`.
    Paid,
    /// Given up; a payment for it is refused as not pending.
    Canceled,
}

impl OrderStatus {
    /// The stored `status` attribute (`pending`, `paid`, `canceled`).
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Paid => "paid",
            OrderStatus::Canceled => "canceled",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        [OrderStatus::Pending, OrderStatus::Paid, OrderStatus::Canceled].into_iter().find(|s| s.as_str() == raw)
    }
}

/// One line of an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderItem {
    /// The product as the customer saw it.
    pub name: String,
    /// Units bought.
    pub quantity: u32,
    /// Price of one, in minor units of the order's currency.
    pub unit_amount: i64,
}

/// An item of the `Orders` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// The table key, the same id as the PaymentIntent's `metadata.orderId`.
    pub id: OrderId,
    /// Where the order is in its life.
    pub status: OrderStatus,
    /// Where the confirmation goes.
    pub email: String,
    /// Lowercase ISO 4217 (`eur`), as Stripe writes it.
    pub currency: String,
    /// In minor units.
    pub total: i64,
    /// The lines the total was computed from.
    pub items: Vec<OrderItem>,
    /// When the order was created, RFC 3339 UTC.
    pub created_at: String,
    /// When it became paid, RFC 3339 UTC; `None` while pending.
    pub paid_at: Option<String>,
    /// The PaymentIntent that paid the order.
    pub payment_intent_id: Option<String>,
}

/// A successful payment, as the webhook saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    /// The PaymentIntent id (`pi_…`) that paid.
    pub intent_id: String,
    /// Minor units received.
    pub amount: i64,
    /// ISO 4217 as Stripe sent it; compared lowercase with the order's.
    pub currency: String,
}

/// What marking an order paid did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MarkPaid {
    /// This call moved the order from pending to paid.
    Paid(Order),
    /// It was already paid by this same PaymentIntent: an earlier attempt's effect (the work
    /// after it, such as the confirmation email, may still be due).
    AlreadyPaidByThisPayment(Order),
    /// No such order.
    NotFound,
    /// The order is not pending (paid by another PaymentIntent, or canceled).
    NotPending(Order),
    /// The order is pending but the payment does not match its total or currency.
    AmountMismatch(Order),
}

/// What cancelling a subscription did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CancelSubscription {
    /// The subscription is now `canceled` (this call or an earlier one).
    Canceled,
    /// No subscription with that id.
    NotFound,
}

/// A failed read or write of the orders or subscriptions table.
#[derive(Debug, thiserror::Error)]
pub enum OrdersError {
    /// The DynamoDB call failed; its kind says whether to retry.
    #[error(transparent)]
    Store(#[from] DynamoError),
    /// A stored item lacks an attribute or has one of the wrong type.
    #[error("stored item is malformed: {0}")]
    Malformed(String),
}

/// The `Orders` table.
#[derive(Clone, Debug)]
pub struct OrdersRepo {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl OrdersRepo {
    /// The orders in `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Writes an order as given, unconditionally (checkout, seeding and tests).
    pub async fn put(&self, order: &Order) -> Result<(), OrdersError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(order_to_item(order)))
            .send()
            .await
            .map_err(|e| DynamoError::new("PutItem", e))?;
        Ok(())
    }

    /// Creates an order; `Ok(false)` if the id exists.
    pub async fn create(&self, order: &Order) -> Result<bool, OrdersError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(order_to_item(order)))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => match dynamo::split("PutItem", e)? {
                PutItemError::ConditionalCheckFailedException(_) => Ok(false),
                other => Err(DynamoError::service("PutItem", other).into()),
            },
        }
    }

    /// The order, read consistently (it may have just been paid), or `None`.
    pub async fn get(&self, id: &OrderId) -> Result<Option<Order>, OrdersError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.0.clone()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| DynamoError::new("GetItem", e))?;
        out.item.map(|item| order_from_item(&item)).transpose()
    }

    /// pending → paid, in one conditional update that also checks the amount and currency.
    pub async fn mark_paid(&self, id: &OrderId, payment: &Payment) -> Result<MarkPaid, OrdersError> {
        let currency = payment.currency.to_ascii_lowercase();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.0.clone()))
            .update_expression("SET #status = :paid, paidAt = :now, paymentIntentId = :intent")
            .condition_expression(
                "attribute_exists(id) AND #status = :pending AND #total = :amount AND currency = :currency",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#total", "total")
            .expression_attribute_values(":paid", AttributeValue::S(OrderStatus::Paid.as_str().into()))
            .expression_attribute_values(":pending", AttributeValue::S(OrderStatus::Pending.as_str().into()))
            .expression_attribute_values(":now", AttributeValue::S(timestamp_now()))
            .expression_attribute_values(":intent", AttributeValue::S(payment.intent_id.clone()))
            .expression_attribute_values(":amount", AttributeValue::N(payment.amount.to_string()))
            .expression_attribute_values(":currency", AttributeValue::S(currency))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                let item =
                    out.attributes.ok_or_else(|| DynamoError::malformed("UpdateItem", "no attributes returned"))?;
                Ok(MarkPaid::Paid(order_from_item(&item)?))
            }
            Err(e) => match dynamo::split("UpdateItem", e)? {
                UpdateItemError::ConditionalCheckFailedException(failed) => match failed.item() {
                    None => Ok(MarkPaid::NotFound),
                    Some(old) => {
                        let order = order_from_item(old)?;
                        Ok(match order.status {
                            OrderStatus::Paid if order.payment_intent_id.as_deref() == Some(&payment.intent_id) => {
                                MarkPaid::AlreadyPaidByThisPayment(order)
                            }
                            OrderStatus::Pending => MarkPaid::AmountMismatch(order),
                            _ => MarkPaid::NotPending(order),
                        })
                    }
                },
                other => Err(DynamoError::service("UpdateItem", other).into()),
            },
        }
    }
}

/// The `Subscriptions` table, keyed by the Stripe subscription id.
#[derive(Clone, Debug)]
pub struct SubscriptionsRepo {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl SubscriptionsRepo {
    /// The subscriptions in `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Writes a subscription record (`id`, `status`, optional `customerId`), unconditionally.
    pub async fn put(&self, id: &str, status: &str, customer_id: Option<&str>) -> Result<(), OrdersError> {
        let mut item = HashMap::from([
            ("id".to_owned(), AttributeValue::S(id.to_owned())),
            ("status".to_owned(), AttributeValue::S(status.to_owned())),
            ("updatedAt".to_owned(), AttributeValue::S(timestamp_now())),
        ]);
        if let Some(c) = customer_id {
            item.insert("customerId".to_owned(), AttributeValue::S(c.to_owned()));
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| DynamoError::new("PutItem", e))?;
        Ok(())
    }

    /// The stored status, or `None` when there is no such subscription.
    pub async fn status(&self, id: &str) -> Result<Option<String>, OrdersError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| DynamoError::new("GetItem", e))?;
        Ok(out.item.and_then(|i| dynamo::string(&i, "status").cloned()))
    }

    /// Sets `status = canceled` on an existing subscription. `canceled_at` (epoch seconds, from
    /// Stripe) is kept from the first cancellation; repeating it changes nothing else.
    pub async fn cancel(&self, id: &str, canceled_at: Option<i64>) -> Result<CancelSubscription, OrdersError> {
        let canceled_at = canceled_at.unwrap_or_else(|| crate::clock::now_ms() / 1000);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.to_owned()))
            .update_expression("SET #status = :canceled, canceledAt = if_not_exists(canceledAt, :at), updatedAt = :now")
            .condition_expression("attribute_exists(id)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":canceled", AttributeValue::S("canceled".into()))
            .expression_attribute_values(":at", AttributeValue::N(canceled_at.to_string()))
            .expression_attribute_values(":now", AttributeValue::S(timestamp_now()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(CancelSubscription::Canceled),
            Err(e) => match dynamo::split("UpdateItem", e)? {
                UpdateItemError::ConditionalCheckFailedException(_) => Ok(CancelSubscription::NotFound),
                other => Err(DynamoError::service("UpdateItem", other).into()),
            },
        }
    }
}

pub(crate) fn order_to_item(order: &Order) -> HashMap<String, AttributeValue> {
    let items = order
        .items
        .iter()
        .map(|i| {
            AttributeValue::M(HashMap::from([
                ("name".to_owned(), AttributeValue::S(i.name.clone())),
                ("quantity".to_owned(), AttributeValue::N(i.quantity.to_string())),
                ("unitAmount".to_owned(), AttributeValue::N(i.unit_amount.to_string())),
            ]))
        })
        .collect();
    let mut item = HashMap::from([
        ("id".to_owned(), AttributeValue::S(order.id.0.clone())),
        ("status".to_owned(), AttributeValue::S(order.status.as_str().into())),
        ("email".to_owned(), AttributeValue::S(order.email.clone())),
        ("currency".to_owned(), AttributeValue::S(order.currency.to_ascii_lowercase())),
        ("total".to_owned(), AttributeValue::N(order.total.to_string())),
        ("items".to_owned(), AttributeValue::L(items)),
        ("createdAt".to_owned(), AttributeValue::S(order.created_at.clone())),
    ]);
    if let Some(at) = &order.paid_at {
        item.insert("paidAt".to_owned(), AttributeValue::S(at.clone()));
    }
    if let Some(pi) = &order.payment_intent_id {
        item.insert("paymentIntentId".to_owned(), AttributeValue::S(pi.clone()));
    }
    item
}

fn malformed(what: impl Into<String>) -> OrdersError {
    OrdersError::Malformed(what.into())
}

fn s<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Result<&'a String, OrdersError> {
    dynamo::string(item, name).ok_or_else(|| malformed(format!("missing string {name}")))
}

fn n<T: std::str::FromStr>(item: &HashMap<String, AttributeValue>, name: &str) -> Result<T, OrdersError> {
    dynamo::number(item, name).ok_or_else(|| malformed(format!("missing or invalid number {name}")))
}

pub(crate) fn order_from_item(item: &HashMap<String, AttributeValue>) -> Result<Order, OrdersError> {
    let id = OrderId::parse(s(item, "id")?).map_err(|e| malformed(e.to_string()))?;
    let status = OrderStatus::parse(s(item, "status")?).ok_or_else(|| malformed("unknown status"))?;
    let items = match item.get("items") {
        None => Vec::new(),
        Some(v) => v
            .as_l()
            .map_err(|_| malformed("items is not a list"))?
            .iter()
            .map(|v| {
                let m = v.as_m().map_err(|_| malformed("an item is not a map"))?;
                Ok(OrderItem {
                    name: s(m, "name")?.clone(),
                    quantity: n(m, "quantity")?,
                    unit_amount: n(m, "unitAmount")?,
                })
            })
            .collect::<Result<_, OrdersError>>()?,
    };
    let opt = |name: &str| dynamo::string(item, name).cloned();
    Ok(Order {
        id,
        status,
        email: s(item, "email")?.clone(),
        currency: s(item, "currency")?.clone(),
        total: n(item, "total")?,
        items,
        created_at: s(item, "createdAt")?.clone(),
        paid_at: opt("paidAt"),
        payment_intent_id: opt("paymentIntentId"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(OrderId::parse("ord_123-ABC").is_ok());
        for bad in ["", "a/b", "a b", "é", &"a".repeat(65)] {
            assert_eq!(OrderId::parse(bad), Err(InvalidOrderId), "{bad:?}");
        }
    }

    #[test]
    fn orders_round_trip() {
        let order = Order {
            id: OrderId::parse("ord_1").unwrap(),
            status: OrderStatus::Paid,
            email: "a@example.com".into(),
            currency: "eur".into(),
            total: 2599,
            items: vec![OrderItem { name: "<b>Mug</b>".into(), quantity: 2, unit_amount: 1000 }],
            created_at: timestamp_now(),
            paid_at: Some(timestamp_now()),
            payment_intent_id: Some("pi_1".into()),
        };
        assert_eq!(order_from_item(&order_to_item(&order)).unwrap(), order);
        let mut item = order_to_item(&order);
        item.insert("status".into(), AttributeValue::S("lost".into()));
        assert!(order_from_item(&item).is_err());
    }
}
