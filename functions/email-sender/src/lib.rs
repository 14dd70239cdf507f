//! email-sender: email jobs from SQS, rendered and sent once each, with partial batch failures
//! (`ReportBatchItemFailures`) so one bad message never makes a whole batch retry.

pub mod handler;
pub mod settings;
