# frozen_string_literal: true

# tasker_worker.rb: the reference Ruby worker of tasker's external-worker
# protocol.  require 'tasker_worker' loads the handler base classes
# (Tasker::StepHandler::Base, ::Api), the errors (Tasker::PermanentError,
# Tasker::RetryableError) and TaskerWorker::Worker.
#
# Rules: the library depends on the Ruby standard library and the pg gem
# (Debian: ruby-pg) only.  Handler files need nothing but this file, so a
# handler class of the Ruby tasker-engine gem loads unchanged.
#
# IDENTIFICATION clients/ruby/lib/tasker_worker.rb

require_relative 'tasker/errors'
require_relative 'tasker/models'
require_relative 'tasker/step_handler'
require_relative 'tasker_worker/connection'
require_relative 'tasker_worker/worker'

module TaskerWorker
  VERSION = '0.1.0'
end
