# frozen_string_literal: true

# tasker/models.rb: the task, step and sequence objects a handler's
# process(task, sequence, step) receives, built from one claimed step's
# envelope (docs/workers.md) with the readers the Ruby gem's handlers use.
#
# Rules: these are plain objects, not database rows; nothing a handler
# sets on them is written back except step.results (through the worker's
# completion call).  JSON objects become IndifferentHash, so
# task.context['order_id'] and task.context[:order_id] both work, as they
# do on the gem's models.  The sequence holds the step itself and the
# step's parents (the envelope's dependencies), nothing further up: a
# handler that needs an ancestor's results has that ancestor's child pass
# them on.  Objects are built and used in one handler thread.
#
# IDENTIFICATION clients/ruby/lib/tasker/models.rb

require 'json'

module Tasker
  # A Hash with string keys that also answers to symbols, like
  # ActiveSupport's HashWithIndifferentAccess for the reads handlers do.
  class IndifferentHash < Hash
    # parse(text): JSON text to Ruby, every object an IndifferentHash.
    def self.parse(text)
      return nil if text.nil?

      JSON.parse(text, object_class: IndifferentHash)
    end

    def [](key)
      super(convert_key(key))
    end

    def []=(key, value)
      super(convert_key(key), value)
    end
    alias store []=

    def fetch(key, *rest, &block)
      super(convert_key(key), *rest, &block)
    end

    def key?(key)
      super(convert_key(key))
    end
    alias has_key? key?
    alias include? key?
    alias member? key?

    def dig(key, *rest)
      super(convert_key(key), *rest)
    end

    def delete(key, &block)
      super(convert_key(key), &block)
    end

    def values_at(*keys)
      super(*keys.map { |k| convert_key(k) })
    end

    def with_indifferent_access
      self
    end

    private

    def convert_key(key)
      key.is_a?(Symbol) ? key.to_s : key
    end
  end

  # The task a step belongs to.
  class Task
    attr_reader :task_id, :name, :namespace, :version, :context

    def initialize(envelope)
      @task_id = envelope['task_id']
      @name = envelope['task_name']
      @namespace = envelope['namespace']
      @version = envelope['version']
      @context = envelope['context'] || IndifferentHash.new
    end

    alias id task_id
    alias namespace_name namespace
  end

  # One workflow step.  For the claimed step, attempts is this attempt's
  # number (1 for the first run) and results starts nil; for a parent,
  # results is what the parent's handler stored.
  class WorkflowStep
    attr_reader :workflow_step_id, :task_id, :name, :inputs, :attempts,
                :handler_class, :handler_config, :queue
    attr_accessor :results

    def initialize(fields)
      @workflow_step_id = fields[:workflow_step_id]
      @task_id = fields[:task_id]
      @name = fields[:name]
      @inputs = fields[:inputs] || IndifferentHash.new
      @attempts = fields[:attempts]
      @handler_class = fields[:handler_class]
      @handler_config = fields[:handler_config] || IndifferentHash.new
      @queue = fields[:queue]
      @results = fields[:results]
    end

    alias id workflow_step_id
    alias step_id workflow_step_id
    alias attempt attempts
  end

  # The steps a handler can see: itself and its parents.
  class StepSequence
    attr_reader :steps

    def initialize(steps)
      @steps = steps
    end

    # find_step_by_name(name): the step of that name, or nil.
    def find_step_by_name(name)
      name = name.to_s
      @steps.find { |s| s.name == name }
    end

    # Build the three objects of process(task, sequence, step) from a
    # parsed envelope; returns [task, sequence, step].
    def self.from_envelope(envelope)
      task = Task.new(envelope)
      step = WorkflowStep.new(
        workflow_step_id: envelope['step_id'], task_id: task.task_id,
        name: envelope['step_name'], inputs: envelope['inputs'],
        attempts: envelope['attempt'], handler_class: envelope['handler_class'],
        handler_config: envelope['handler_config'], queue: envelope['queue']
      )
      parents = (envelope['dependencies'] || {}).map do |name, results|
        WorkflowStep.new(task_id: task.task_id, name: name, results: results)
      end
      [task, new([step] + parents), step]
    end
  end
end
