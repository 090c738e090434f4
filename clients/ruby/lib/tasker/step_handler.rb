# frozen_string_literal: true

# tasker/step_handler.rb: Tasker::StepHandler::Base and ::Api, the base
# classes of step handlers written as the Ruby tasker-engine guide writes
# them: implement process(task, sequence, step); optionally override
# process_results(step, process_output, initial_results); publish custom
# events with publish_custom_event(name, payload); raise to fail.
#
# Rules: the worker makes one handler instance per step attempt
# (Klass.new(config: handler_config), or Klass.new if the class's
# initialize takes no config) and calls handle, never process directly.
# handle follows the gem: step.results set inside process wins over the
# return value; otherwise the return value becomes step.results.
# publish_custom_event runs SELECT tasker_publish_event($1, $2) at once on
# the handler thread's own connection (the event is out even if the step
# later fails); the event must be declared by the step's template.
# Api is Base under another name: an HTTP-calling step in Ruby makes its
# own requests (Net::HTTP, Faraday) inside process.
#
# IDENTIFICATION clients/ruby/lib/tasker/step_handler.rb

module Tasker
  module StepHandler
    # The base class of every Ruby step handler.
    class Base
      attr_reader :config

      def initialize(config: nil)
        @config = config
        @published_events = []
      end

      # The events this handler may publish, as the gem declares them.
      # tasker reads the declaration from the template (custom_events),
      # not from here; this is kept so gem handlers load unchanged.
      def self.custom_event_configuration
        []
      end

      # Framework method: run process and store its output.  Returns
      # process's output; the results to record are step.results.
      def handle(task, sequence, step)
        initial_results = step.results
        process_output = process(task, sequence, step)
        process_results(step, process_output, initial_results)
        process_output
      end

      # The extension point: the step's business logic.
      def process(_task, _sequence, _step)
        raise NotImplementedError,
              "#{self.class.name} must implement process(task, sequence, step)"
      end

      # Store process's output as the step's results, unless process set
      # step.results itself.
      def process_results(step, process_output, initial_results)
        return if step.results != initial_results

        step.results = process_output
      end

      # Publish a custom event (declared by the template) with a payload
      # that JSON can encode.
      def publish_custom_event(event_name, payload = {})
        published_events << [event_name.to_s, payload]
        publisher = Thread.current[:tasker_event_publisher]
        publisher&.call(event_name.to_s, payload)
        nil
      end

      # The events this instance published, as [name, payload] pairs
      # (for tests of a handler outside the worker).
      def published_events
        @published_events ||= []
      end

      protected

      # The value under key in a parent step's results (nil if absent).
      def get_previous_step_data(sequence, step_name, key)
        step = sequence.find_step_by_name(step_name)
        results = step&.results
        results.respond_to?(:[]) ? results[key.to_s] : nil
      end
    end

    # Handlers that call an HTTP API: the same contract as Base.
    class Api < Base
    end
  end
end
