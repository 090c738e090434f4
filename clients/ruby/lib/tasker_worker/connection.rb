# frozen_string_literal: true

# tasker_worker/connection.rb: one PostgreSQL connection of the worker,
# with the protocol's statements prepared on it and reconnection when the
# server goes away.
#
# Rules: each worker thread owns its own Connection and is the only one
# to call exec on it (cancel may come from any thread).  Every statement
# is a single autocommit call to one protocol function, so a statement
# cut off by a lost connection is simply sent again after reconnecting:
# claims, heartbeats and recordings are safe to repeat (a recording
# already made returns false; a claim made but not received expires with
# its lease and is reclaimed by the server).  exec reconnects with
# backoff until it succeeds or the give_up callable says to stop, and
# then raises Gone.  A query cancelled by cancel raises PG::QueryCanceled
# to the caller, untouched.
#
# IDENTIFICATION clients/ruby/lib/tasker_worker/connection.rb

require 'pg'

module TaskerWorker
  # Raised by Connection#exec when it gives up reconnecting.
  class Gone < StandardError; end

  class Connection
    # SQLSTATEs that mean the session is over: the server shut down,
    # crashed or is starting (class 57P), or the connection broke (08).
    SESSION_OVER = /\A(57P0[1-4]|08...)\z/.freeze

    attr_reader :name

    # dsn: a libpq connection string; name: for logs and
    # application_name; statements: { key => sql }; give_up: a callable
    # returning true when reconnecting should stop.
    def initialize(dsn, name:, logger:, statements:, give_up: -> { false })
      @dsn = dsn
      @name = name
      @logger = logger
      @statements = statements
      @give_up = give_up
      @conn = nil
      @prepared = {}
      @lost_logged = false
    end

    # exec(key, params): run the prepared statement key; returns the
    # PG::Result.  Reconnects and repeats the statement when the session
    # was lost.
    def exec(key, params)
      loop do
        ensure_connected
        begin
          prepare(key)
          return @conn.exec_prepared(key.to_s, params)
        rescue PG::Error => e
          raise unless session_over?(e)

          lost(e)
        end
      end
    end

    # Ask the server to cancel the statement running on this connection
    # (from any thread); a no-op when none runs.
    def cancel
      @conn&.cancel
    rescue PG::Error, IOError
      nil
    end

    def close
      @conn&.close
    rescue PG::Error, IOError
      nil
    ensure
      @conn = nil
    end

    # The primary message of a PG::Error (without "ERROR:  " and the
    # context lines), or its first line.
    def self.message(error)
      primary = error.respond_to?(:result) && error.result&.error_field(PG::Result::PG_DIAG_MESSAGE_PRIMARY)
      primary || error.message.to_s.strip.lines.first.to_s.strip
    rescue PG::Error
      error.message.to_s.strip
    end

    # The SQLSTATE of a PG::Error, or nil.
    def self.sqlstate(error)
      error.respond_to?(:result) && error.result&.error_field(PG::Result::PG_DIAG_SQLSTATE)
    rescue PG::Error
      nil
    end

    private

    def ensure_connected
      return if @conn && @conn.status == PG::CONNECTION_OK

      close if @conn
      delay = 0.05
      loop do
        raise Gone, "#{@name}: gave up connecting" if @give_up.call

        begin
          @conn = PG.connect(@dsn, application_name: "tasker-worker #{@name}")
          @prepared = {}
          if @lost_logged
            @logger.info("#{@name}: reconnected")
            @lost_logged = false
          end
          return
        rescue PG::Error => e
          log_lost(e)
          sleep(delay)
          delay = [delay * 2, 2.0].min
        end
      end
    end

    def prepare(key)
      return if @prepared[key]

      @conn.prepare(key.to_s, @statements.fetch(key))
      @prepared[key] = true
    end

    def session_over?(error)
      return true if error.is_a?(PG::ConnectionBad) || error.is_a?(PG::UnableToSend)
      return true if @conn.nil? || @conn.status != PG::CONNECTION_OK

      SESSION_OVER.match?(self.class.sqlstate(error).to_s)
    end

    def lost(error)
      log_lost(error)
      close
    end

    def log_lost(error)
      return if @lost_logged

      @logger.warn("#{@name}: connection lost (#{self.class.message(error)}); reconnecting")
      @lost_logged = true
    end
  end
end
