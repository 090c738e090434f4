# frozen_string_literal: true

# handlers.rb: the step handlers of the guide's order_process template,
# written as the Ruby tasker guide writes them, run by the Ruby worker:
#
#   ruby clients/ruby/bin/tasker-worker --dsn 'dbname=app' --queue orders \
#        --require examples/ruby_migration/handlers.rb
#
# Rules: each class is named by a handler_class of order_process.yaml and
# implements process(task, sequence, step), returning the step's results
# (a Hash that JSON can encode).  A step sees its own task's context and
# its parents' results (sequence.find_step_by_name), so each step passes
# on what the steps after it need.  ORDERS and STOCK stand in for the
# application's models (Order.find, Inventory): this file has no other
# dependency than the worker library, which the runner has loaded.
# Failures are raised: Tasker::PermanentError (no retry),
# Tasker::RetryableError (retry, after retry_after seconds when given),
# anything else (retry under the step's policy).
#
# IDENTIFICATION examples/ruby_migration/handlers.rb

require 'securerandom'
require 'time'

module OrderProcess
  # The orders the demo knows.  Order 8 wants more gadgets than are in
  # stock; order 9 is large enough to be held for a risk review.
  ORDERS = {
    7 => { 'customer_id' => 42, 'items' => [{ 'sku' => 'widget', 'quantity' => 3, 'price' => 9.99 }] },
    8 => { 'customer_id' => 43, 'items' => [{ 'sku' => 'gadget', 'quantity' => 6, 'price' => 99.0 }] },
    9 => { 'customer_id' => 44, 'items' => [{ 'sku' => 'widget', 'quantity' => 60, 'price' => 9.99 },
                                            { 'sku' => 'gadget', 'quantity' => 5, 'price' => 99.0 }] }
  }.freeze

  # Units on hand per SKU.
  STOCK = { 'widget' => 100, 'gadget' => 5 }.freeze

  module StepHandler
    # fetch_order: the order named by the task's context, with its total.
    class FetchOrderHandler < Tasker::StepHandler::Base
      def process(task, _sequence, _step)
        order_id = task.context['order_id']
        order = ORDERS[order_id]
        raise Tasker::PermanentError.new("order #{order_id} not found", error_code: 'ORDER_NOT_FOUND') unless order
        if order['customer_id'] != task.context['customer_id']
          raise Tasker::PermanentError.new("order #{order_id} belongs to another customer",
                                           error_code: 'CUSTOMER_MISMATCH')
        end

        total = order['items'].sum { |i| i['quantity'] * i['price'] }.round(2)
        { order_id: order_id, customer_id: order['customer_id'], items: order['items'], total: total }
      end
    end

    # validate_inventory: every item is in stock, or the step waits a
    # minute for stock to arrive (an unknown SKU never will).
    class ValidateInventoryHandler < Tasker::StepHandler::Base
      def process(_task, sequence, _step)
        items = get_previous_step_data(sequence, 'fetch_order', 'items')
        levels = items.map do |item|
          available = STOCK.fetch(item['sku']) do
            raise Tasker::PermanentError.new("unknown sku #{item['sku']}", error_code: 'UNKNOWN_SKU')
          end
          if available < item['quantity']
            raise Tasker::RetryableError.new("only #{available} of #{item['sku']} in stock",
                                             retry_after: 60, context: { sku: item['sku'] })
          end
          item.merge('available' => available)
        end
        { items: levels, total: get_previous_step_data(sequence, 'fetch_order', 'total') }
      end
    end

    # process_payment: the guide's ProcessPaymentHandler, with a
    # deterministic risk score and a gateway that times out on the first
    # attempt (so the walkthrough shows a retry).
    class ProcessPaymentHandler < Tasker::StepHandler::Base
      def self.custom_event_configuration
        [
          { name: 'payment.processed',
            description: 'Published when payment processing completes successfully' },
          { name: 'payment.risk_flagged',
            description: 'Published when payment is flagged for manual review' }
        ]
      end

      def process(task, sequence, step)
        order_id = task.context[:order_id]
        inventory = sequence.find_step_by_name('validate_inventory').results
        payment_amount = inventory[:total]

        risk_score = assess_payment_risk(order_id, payment_amount)
        if risk_score > 0.8
          publish_custom_event('payment.risk_flagged', {
                                 order_id: order_id,
                                 risk_score: risk_score,
                                 requires_manual_review: true,
                                 flagged_at: Time.now.utc.iso8601
                               })
          return { status: 'risk_review', risk_score: risk_score }
        end

        payment_result = process_payment_transaction(order_id, payment_amount, step.attempts)
        publish_custom_event('payment.processed', {
                               order_id: order_id,
                               payment_amount: payment_amount,
                               transaction_id: payment_result[:transaction_id],
                               processed_at: Time.now.utc.iso8601
                             })
        { status: 'completed', transaction_id: payment_result[:transaction_id],
          amount_charged: payment_amount, processor: payment_processor,
          items: inventory[:items] }
      end

      private

      # A score between 0.0 and 1.0: large orders need a human look.
      def assess_payment_risk(_order_id, amount)
        amount > 500 ? 0.9 : 0.1
      end

      def process_payment_transaction(order_id, amount, attempt)
        if attempt == 1
          raise Tasker::RetryableError.new("payment gateway timed out charging #{amount} for order #{order_id}",
                                           retry_after: 1)
        end
        { transaction_id: "txn_#{SecureRandom.hex(8)}" }
      end

      # handler_config of the step, set per environment by the template.
      def payment_processor
        (config && config['payment_processor']) || 'default'
      end
    end

    # update_inventory: take the paid items out of stock.  A payment held
    # for review stops the order here, for good.
    class UpdateInventoryHandler < Tasker::StepHandler::Base
      def process(task, sequence, _step)
        payment = sequence.find_step_by_name('process_payment').results
        unless payment['status'] == 'completed'
          raise Tasker::PermanentError.new(
            "payment for order #{task.context['order_id']} is #{payment['status']}, not completed",
            error_code: 'PAYMENT_NOT_COMPLETED'
          )
        end

        updates = payment['items'].map do |item|
          { sku: item['sku'], quantity: -item['quantity'], on_hand: item['available'] - item['quantity'] }
        end
        { updates: updates, transaction_id: payment['transaction_id'] }
      end
    end

    # send_confirmation: the email, as results (a real handler sends it).
    class SendConfirmationHandler < Tasker::StepHandler::Base
      def process(task, sequence, step)
        inventory = sequence.find_step_by_name('update_inventory').results
        lines = inventory['updates'].map { |u| "#{-u['quantity']} x #{u['sku']}" }
        step.results = {
          to: "customer-#{task.context['customer_id']}@example.com",
          subject: "Order #{task.context['order_id']} confirmed",
          body: "#{lines.join(', ')}; payment #{inventory['transaction_id']}"
        }
        :sent
      end
    end
  end
end
