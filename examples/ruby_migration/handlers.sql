-- handlers.sql: map the Ruby handler classes of order_process.yaml to the
-- queue "orders", where `tasker-worker --queue orders --require
-- examples/ruby_migration/handlers.rb` runs them.
--
-- Rules: run before registering the template (a template's handler classes
-- must resolve when it is registered); re-running replaces each mapping,
-- including one to an SQL function (examples/order_process maps the same
-- class names to SQL functions: use one example per database).
--
-- IDENTIFICATION examples/ruby_migration/handlers.sql
SELECT tasker_register_handler('OrderProcess::StepHandler::FetchOrderHandler', 'orders');
SELECT tasker_register_handler('OrderProcess::StepHandler::ValidateInventoryHandler', 'orders');
SELECT tasker_register_handler('OrderProcess::StepHandler::ProcessPaymentHandler', 'orders');
SELECT tasker_register_handler('OrderProcess::StepHandler::UpdateInventoryHandler', 'orders');
SELECT tasker_register_handler('OrderProcess::StepHandler::SendConfirmationHandler', 'orders');
