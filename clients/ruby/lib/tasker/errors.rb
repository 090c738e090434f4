# frozen_string_literal: true

# tasker/errors.rb: the exceptions a step handler raises to say how its
# step failed, with the names and constructors of the Ruby tasker-engine
# gem, so handlers written for the gem raise them unchanged.
#
# Rules: the worker maps an exception to one tasker_fail_step call.
# PermanentError is a permanent failure (retryable = false: the step and
# its task go to error at once).  RetryableError is a retryable failure;
# its retry_after (seconds) becomes the call's retry_after, which the
# server caps by tasker.max_backoff.  Any other exception is retryable
# under the step's retry policy.  The message is stored as the error's
# "message"; the class, error_code and context go beside it.
#
# IDENTIFICATION clients/ruby/lib/tasker/errors.rb

module Tasker
  # Base class of the errors this library defines.
  class Error < StandardError; end

  # Raised for a bad worker configuration (an unknown option, a handler
  # file that does not load).
  class ConfigurationError < Error; end

  # Base class of the errors a handler raises to classify its failure.
  class ProceduralError < Error; end

  # The step failed for a passing reason: retry it, after retry_after
  # seconds when given (else after the step's own backoff).
  #
  #   raise Tasker::RetryableError, 'payment gateway timed out'
  #   raise Tasker::RetryableError.new('rate limited', retry_after: 60)
  class RetryableError < ProceduralError
    attr_reader :retry_after, :context

    def initialize(message = nil, retry_after: nil, context: {})
      super(message)
      @retry_after = retry_after
      @context = context || {}
    end
  end

  # The step failed for good: do not retry it.
  #
  #   raise Tasker::PermanentError.new('card declined', error_code: 'DECLINED')
  class PermanentError < ProceduralError
    attr_reader :error_code, :context

    def initialize(message = nil, error_code: nil, context: {})
      super(message)
      @error_code = error_code
      @context = context || {}
    end
  end
end
