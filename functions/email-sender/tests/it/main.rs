//! email-sender integration tests, one binary: the handler against real SQS/SES on moto (`email_sender`), the
//! binary under a local Runtime API (`binary`), and the producer-to-inbox path (`end_to_end`).

mod binary;
mod common;
mod email_sender;
mod end_to_end;
