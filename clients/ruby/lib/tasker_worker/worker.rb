# frozen_string_literal: true

# tasker_worker/worker.rb: TaskerWorker::Worker, a process's worth of
# external tasker workers for one queue: it claims steps with
# tasker_claim_steps, runs their Ruby handler classes on a pool of
# threads, records the outcomes, keeps long steps' leases alive and shuts
# down cleanly.
#
# Rules (the protocol is docs/workers.md; this client's guide is
# clients/ruby/README.md):
# - Threads, each with its own connection: one claimer (long-polls with
#   wait; claims no more than the free room, threads + prefetch minus the
#   claims queued or running, and waits until that room is worth a call:
#   prefetch steps, or any once no claimed step waits for a thread), N
#   handler threads (also used for custom events), one
#   recorder (batches successes into tasker_complete_steps, falls back to
#   tasker_complete_step one by one when fewer were recorded than sent, to
#   learn which leases were lost; failures go one by one through
#   tasker_fail_step) and one heartbeat (tasker_extend_lease for any claim
#   whose lease is a third gone).
# - A claim is queued, then running, then done (outcome handed to the
#   recorder), then forgotten once recorded.  Lease deadlines are kept on
#   the monotonic clock from the moment before the claim call, so they err
#   early.  A claim whose lease was lost (TK003) is dropped: its handler
#   may finish, but nothing is recorded for it.
# - stop (SIGTERM, SIGINT): stop claiming (the long poll is cancelled),
#   release the queued claims at once (tasker_release_step, attempt not
#   counted), let running handlers finish until the grace period ends,
#   then release what is still running and end those threads; record every
#   finished outcome; exit.  A second signal skips the grace period.
# - All shared state is under one mutex; handler code runs outside it.
#
# IDENTIFICATION clients/ruby/lib/tasker_worker/worker.rb

require 'json'
require 'logger'
require 'socket'
require_relative 'connection'
require_relative '../tasker/errors'
require_relative '../tasker/models'
require_relative '../tasker/step_handler'

module TaskerWorker
  # One claimed step and where it is in this process.
  Claim = Struct.new(:step_id, :token, :envelope, :state, :lease_deadline,
                     :lost, :outcome, keyword_init: true)

  # What a handler produced: kind is :complete (results is JSON text) or
  # :fail (error is JSON text; retryable; retry_after seconds or nil).
  Outcome = Struct.new(:claim, :kind, :results, :error, :retryable,
                       :retry_after, keyword_init: true)

  class Worker
    DEFAULTS = {
      threads: 4, prefetch: nil, lease: 300.0, wait: 30.0, grace: 30.0,
      batch: 500, max_claim: 100, schema: nil, worker_id: nil
    }.freeze

    attr_reader :stats, :worker_id

    def initialize(dsn:, queue:, logger: nil, **options)
      unknown = options.keys - DEFAULTS.keys
      raise Tasker::ConfigurationError, "unknown options: #{unknown.join(', ')}" if unknown.any?

      o = DEFAULTS.merge(options)
      @dsn = dsn
      @queue = queue
      @logger = logger || Logger.new($stderr)
      @threads = Integer(o[:threads])
      @prefetch = Integer(o[:prefetch] || @threads)
      @lease = Float(o[:lease])
      @wait = Float(o[:wait])
      @grace = Float(o[:grace])
      @batch = Integer(o[:batch])
      @max_claim = Integer(o[:max_claim])
      @worker_id = o[:worker_id] || "#{Socket.gethostname}:#{Process.pid}"
      @statements = Worker.statements(o[:schema])
      validate!
      @mutex = Mutex.new
      @room = ConditionVariable.new
      @tick = ConditionVariable.new
      @claims = {}
      @held = { queued: 0, running: 0 }
      @jobs = Queue.new
      @outcomes = Queue.new
      @classes = {}
      @stopping = false
      @finished = false
      @give_up_at = nil
      @signal_r, @signal_w = IO.pipe
      @stats = Hash.new(0)
      @timings = {}
    end

    # The protocol's statements, schema-qualified when schema is given.
    def self.statements(schema)
      s = schema ? "#{PG::Connection.quote_ident(schema)}." : ''
      {
        claim: "SELECT step_id, claim_token, envelope FROM #{s}tasker_claim_steps($1, $2, $3, $4::interval, $5::interval)",
        complete_one: "SELECT #{s}tasker_complete_step($1::bigint, $2::uuid, $3::jsonb)",
        complete_many: "SELECT #{s}tasker_complete_steps($1::jsonb)",
        fail: "SELECT #{s}tasker_fail_step($1::bigint, $2::uuid, $3::jsonb, $4::boolean, $5::interval)",
        extend: "SELECT #{s}tasker_extend_lease($1::bigint, $2::uuid, $3::interval)",
        release: "SELECT #{s}tasker_release_step($1::bigint, $2::uuid)",
        publish: "SELECT #{s}tasker_publish_event($1::text, $2::jsonb, $3::bigint, $4::bigint)",
        publish_anonymous: "SELECT #{s}tasker_publish_event($1::text, $2::jsonb)"
      }
    end

    # Ask the worker to stop; safe from a signal handler (a second call
    # skips the grace period).
    def request_stop
      @signal_w.write_nonblock('.')
    rescue IO::WaitWritable, IOError
      nil
    end

    # Run until stopped; returns true after a clean stop, false when a
    # worker thread died of a bug.
    def run
      check_connection
      @logger.info("worker #{@worker_id}: queue #{@queue}, #{@threads} threads, " \
                   "prefetch #{@prefetch}, lease #{@lease}s, grace #{@grace}s")
      start_threads
      wait_for_signal
      shutdown
      @logger.info("worker #{@worker_id}: stopped (#{format_stats})")
      @logger.debug("worker #{@worker_id}: calls: #{format_timings}")
      !@failed
    end

    private

    def validate!
      raise Tasker::ConfigurationError, 'queue must not be empty' if @queue.to_s.empty?
      raise Tasker::ConfigurationError, 'threads must be at least 1' if @threads < 1
      raise Tasker::ConfigurationError, 'prefetch must not be negative' if @prefetch.negative?
      raise Tasker::ConfigurationError, 'lease must be between 1 second and 1 day' unless @lease.between?(1, 86_400)
      raise Tasker::ConfigurationError, 'wait must be between 0 and 3600 seconds' unless @wait.between?(0, 3600)
      raise Tasker::ConfigurationError, 'grace must not be negative' if @grace.negative?
      raise Tasker::ConfigurationError, 'batch must be between 1 and 1000' unless @batch.between?(1, 1000)
    end

    def check_connection
      PG.connect(@dsn).close
    rescue PG::Error => e
      raise Tasker::ConfigurationError, "cannot connect: #{Connection.message(e)}"
    end

    def connection(name)
      Connection.new(@dsn, name: "#{@queue}/#{name}", logger: @logger,
                           statements: @statements,
                           give_up: -> { @give_up_at && mono > @give_up_at })
    end

    def mono
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end

    def interval(seconds)
      seconds.nil? ? nil : format('%.3f seconds', seconds)
    end

    def format_stats
      %w[claimed completed failed released lost].map { |k| "#{@stats[k]} #{k}" }.join(', ')
    end

    # "name: calls, mean ms" of the timed protocol calls.
    def format_timings
      @timings.sort.map { |k, (n, t)| format('%s %d x %.2f ms', k, n, n.zero? ? 0 : t * 1000 / n) }.join(', ')
    end

    # Run the block, adding its duration to the timing of key.
    def timed(key)
      t0 = mono
      yield
    ensure
      dt = mono - t0
      @mutex.synchronize do
        entry = (@timings[key] ||= [0, 0.0])
        entry[0] += 1
        entry[1] += dt
      end
    end

    # A thread that logs and stops the worker if its body raises.
    def spawn(name)
      Thread.new do
        Thread.current.name = name
        Thread.current.report_on_exception = false
        yield
      rescue Gone
        nil
      rescue Exception => e # rubocop:disable Lint/RescueException
        @logger.error("#{name}: #{e.class}: #{e.message}\n  #{Array(e.backtrace).first(10).join("\n  ")}")
        @failed = true
        request_stop
      end
    end

    def start_threads
      @claim_conn = connection('claim')
      @claimer = spawn('claimer') { claim_loop(@claim_conn) }
      @handlers = Array.new(@threads) { |i| spawn("handler-#{i}") { handler_loop } }
      @recorder = spawn('recorder') { record_loop }
      @heartbeat = spawn('heartbeat') { heartbeat_loop }
    end

    # Block until a signal (or a dead thread) asks to stop.
    def wait_for_signal
      IO.select([@signal_r])
      got = @signal_r.read_nonblock(64, exception: false)
      @forced = got.is_a?(String) && got.size > 1
    end

    # True once a second stop request arrived.
    def forced?
      @forced ||= @signal_r.read_nonblock(64, exception: false).is_a?(String)
    end

    # ---- claiming -------------------------------------------------------

    def claim_loop(conn)
      until stopping?
        room = wait_for_room
        break if room.zero?

        claim_batch(conn, room)
      end
    ensure
      conn&.close
    end

    # Move a claim to another state, keeping the counts of queued and
    # running claims (the caller holds the mutex).
    def move(claim, state)
      @held[claim.state] -= 1 if @held.key?(claim.state)
      @held[state] += 1 if @held.key?(state)
      claim.state = state
    end

    def stopping?
      @mutex.synchronize { @stopping }
    end

    # Wait until there is room for a worthwhile claim: fewer steps queued
    # or running than threads + prefetch by at least prefetch (capped at
    # max_claim), or by any amount once no step waits for a thread.  Returns
    # how many to claim (0 when stopping).
    def wait_for_room
      want = [[@prefetch, 1].max, @max_claim].min
      @mutex.synchronize do
        loop do
          return 0 if @stopping

          queued = @held[:queued]
          room = @threads + @prefetch - queued - @held[:running]
          return [room, @max_claim].min if room >= want || (room.positive? && queued.zero?)

          @room.wait(@mutex, 1.0)
        end
      end
    end

    def claim_batch(conn, room)
      before = mono
      rows = timed('claim') { conn.exec(:claim, [@queue, @worker_id, room, interval(@lease), interval(@wait)]) }
      accept(rows, before + @lease)
    rescue PG::QueryCanceled
      nil
    rescue PG::Error => e
      @logger.error("claim failed: #{Connection.message(e)}")
      sleep_unless_stopping(1.0)
    end

    def accept(rows, deadline)
      rows.each do |r|
        claim = Claim.new(step_id: r['step_id'].to_i, token: r['claim_token'],
                          envelope: r['envelope'], state: :queued,
                          lease_deadline: deadline, lost: false)
        @mutex.synchronize do
          @claims[claim.step_id] = claim
          @held[:queued] += 1
          @stats['claimed'] += 1
        end
        @jobs << claim
      end
    end

    def sleep_unless_stopping(seconds)
      @mutex.synchronize { @room.wait(@mutex, seconds) unless @stopping }
    end

    # ---- running handlers ------------------------------------------------

    def handler_loop
      conn = nil
      Thread.current[:tasker_event_publisher] = lambda do |name, payload|
        conn ||= connection("events-#{Thread.current.name}")
        publish(conn, name, JSON.generate(payload), *Thread.current[:tasker_step])
      end
      while (claim = @jobs.pop)
        next unless start(claim)

        finish(claim, run_handler(claim))
      end
    ensure
      conn&.close
    end

    # Send a custom event about the running step; a role that may not name
    # the task (it does not own the template: 42501) sends it about no task
    # from then on, with a warning once.
    def publish(conn, name, payload, task_id, step_id)
      unless @anonymous_events
        begin
          return conn.exec(:publish, [name, payload, task_id, step_id])
        rescue PG::InsufficientPrivilege => e
          @anonymous_events = true
          @logger.warn("custom events are sent without their task and step: #{Connection.message(e)}")
        end
      end
      conn.exec(:publish_anonymous, [name, payload])
    end

    # Mark a queued claim running; false when stopping (it stays queued
    # and is released) or when it was lost meanwhile.
    def start(claim)
      @mutex.synchronize do
        return false if @stopping || claim.state != :queued

        move(claim, :running)
        true
      end
    end

    # Hand a running claim's outcome to the recorder (not if it was
    # released meanwhile); a kill at shutdown cannot split the two.
    def finish(claim, outcome)
      Thread.handle_interrupt(Object => :never) do
        @mutex.synchronize do
          next if claim.state != :running

          move(claim, :done)
          @outcomes << outcome
          @room.signal
        end
      end
    end

    # Run the step's handler class; never raises.
    def run_handler(claim)
      envelope = Tasker::IndifferentHash.parse(claim.envelope)
      task, sequence, step = Tasker::StepSequence.from_envelope(envelope)
      Thread.current[:tasker_step] = [task.task_id, step.workflow_step_id]
      handler = instantiate(handler_class(step.handler_class), step.handler_config)
      handler.handle(task, sequence, step)
      Outcome.new(claim: claim, kind: :complete, results: JSON.generate(step.results))
    rescue Exception => e # rubocop:disable Lint/RescueException
      raise if e.is_a?(SystemExit) || e.is_a?(SignalException) || e.is_a?(NoMemoryError)

      failure(claim, e)
    end

    def failure(claim, error)
      message = error.is_a?(PG::Error) ? Connection.message(error) : error.message.to_s
      body = { 'message' => message, 'class' => error.class.name,
               'backtrace' => Array(error.backtrace).first(10) }
      body['error_code'] = error.error_code if error.respond_to?(:error_code) && error.error_code
      body['context'] = error.context if error.respond_to?(:context) && !error.context.to_h.empty?
      retry_after = error.is_a?(Tasker::RetryableError) ? error.retry_after : nil
      Outcome.new(claim: claim, kind: :fail, error: JSON.generate(body),
                  retryable: !error.is_a?(Tasker::PermanentError),
                  retry_after: retry_after && Float(retry_after))
    rescue StandardError => e
      Outcome.new(claim: claim, kind: :fail, retryable: true,
                  error: JSON.generate('message' => "#{error.class} (unreportable: #{e.message})"))
    end

    # The class named by the envelope's handler_class, by constant name.
    def handler_class(name)
      @mutex.synchronize { @classes[name] } || begin
        klass = Object.const_get(name.to_s)
        raise TypeError, "#{name} is not a class" unless klass.is_a?(Class)

        @mutex.synchronize { @classes[name] = klass }
      end
    rescue NameError => e
      raise Tasker::RetryableError, "handler class #{name.inspect} is not defined in worker " \
                                    "#{@worker_id} (#{e.message}); load it with --require"
    end

    def instantiate(klass, config)
      params = klass.instance_method(:initialize).parameters
      takes_config = params.any? { |kind, n| (n == :config && %i[key keyreq].include?(kind)) || kind == :keyrest }
      takes_config ? klass.new(config: config) : klass.new
    end

    # ---- recording outcomes ---------------------------------------------

    # Record outcomes as they come, in batches of what has queued up
    # while the previous batch was being recorded, until :stop.
    def record_loop
      conn = connection('record')
      stop = false
      until stop
        batch = []
        item = @outcomes.pop
        while item != :stop
          batch << item
          break if batch.size >= @batch || @outcomes.empty?

          item = @outcomes.pop
        end
        stop = item == :stop
        record(conn, batch) unless batch.empty?
      end
    ensure
      conn&.close
    end

    def record(conn, batch)
      live = batch.reject { |o| o.claim.lost }
      done, failed = live.partition { |o| o.kind == :complete }
      record_completions(conn, done)
      failed.each { |o| record_failure(conn, o) }
      forget(batch)
    end

    def record_completions(conn, done)
      return if done.empty?
      return complete_one(conn, done.first) if done.size == 1

      json = "[#{done.map { |o| completion_json(o) }.join(',')}]"
      n = timed('complete_many') { conn.exec(:complete_many, [json]).getvalue(0, 0).to_i }
      count('completed', n)
      # Fewer recorded than sent: learn which leases were lost.
      done.each { |o| complete_one(conn, o) } if n < done.size
    rescue PG::Error => e
      @logger.warn("tasker_complete_steps failed (#{Connection.message(e)}); recording one by one")
      done.each { |o| complete_one(conn, o) }
    end

    def completion_json(outcome)
      %({"step_id":#{outcome.claim.step_id},"claim_token":"#{outcome.claim.token}","results":#{outcome.results}})
    end

    def complete_one(conn, outcome)
      c = outcome.claim
      if conn.exec(:complete_one, [c.step_id, c.token, outcome.results]).getvalue(0, 0) == 't'
        count('completed')
      end
    rescue PG::Error => e
      return lease_lost(c, e) if Connection.sqlstate(e) == 'TK003'

      @logger.error("step #{c.step_id}: recording its results failed: #{Connection.message(e)}")
      record_failure(conn, Outcome.new(claim: c, kind: :fail, retryable: true,
                                       error: JSON.generate('message' => "recording results failed: #{Connection.message(e)}")))
    end

    def record_failure(conn, outcome)
      c = outcome.claim
      conn.exec(:fail, [c.step_id, c.token, outcome.error, outcome.retryable.to_s,
                        interval(outcome.retry_after)])
      count('failed')
    rescue PG::Error => e
      return lease_lost(c, e) if Connection.sqlstate(e) == 'TK003'

      @logger.error("step #{c.step_id}: recording its failure failed: #{Connection.message(e)}")
    end

    def lease_lost(claim, error)
      detail = error.result&.error_field(PG::Result::PG_DIAG_MESSAGE_DETAIL)
      @logger.warn("step #{claim.step_id}: lease lost, outcome dropped#{detail ? " (#{detail})" : ''}")
      claim.lost = true
      count('lost')
    end

    def count(key, n = 1)
      @mutex.synchronize { @stats[key] += n }
    end

    def forget(outcomes)
      @mutex.synchronize do
        outcomes.each { |o| @claims.delete(o.claim.step_id) }
        @room.signal
      end
    end

    # ---- heartbeats -------------------------------------------------------

    def heartbeat_loop
      conn = connection('heartbeat')
      period = [@lease / 3.0, 0.1].max
      until @mutex.synchronize { @finished }
        @mutex.synchronize { @tick.wait(@mutex, [period / 2, 1.0].min) unless @finished }
        due = @mutex.synchronize do
          @claims.values.select { |c| !c.lost && c.lease_deadline - mono < @lease - period }
        end
        due.each { |c| extend_lease(conn, c) }
      end
    ensure
      conn&.close
    end

    def extend_lease(conn, claim)
      before = mono
      conn.exec(:extend, [claim.step_id, claim.token, interval(@lease)])
      @mutex.synchronize { claim.lease_deadline = before + @lease }
    rescue PG::Error => e
      unless Connection.sqlstate(e) == 'TK003'
        @logger.error("step #{claim.step_id}: heartbeat failed: #{Connection.message(e)}")
        return
      end
      @mutex.synchronize do
        if claim.state == :queued
          move(claim, :lost)
          @claims.delete(claim.step_id)
        end
      end
      lease_lost(claim, e)
    end

    # ---- stopping ----------------------------------------------------------

    def shutdown
      deadline = mono + @grace
      @give_up_at = deadline + 10
      @mutex.synchronize do
        @stopping = true
        @room.broadcast
      end
      stop_claimer
      control = connection('control')
      release(control, take(:queued))
      @threads.times { @jobs << nil }
      wait_for_handlers(deadline)
      release(control, take(:running))
      @handlers.each { |t| t.kill if t.alive? }
      @outcomes << :stop
      @recorder.join([@give_up_at - mono, 0.1].max)
      @mutex.synchronize do
        @finished = true
        @tick.broadcast
      end
      @heartbeat.join(5)
      control.close
    end

    # Cancel the claimer's long poll until the claimer thread ends (the
    # claim loop checks for stopping before each call, so a cancel that
    # lands between calls only delays the end by one round).
    def stop_claimer
      until @claimer.join(0.2)
        @claim_conn.cancel
        break if forced?
      end
    end

    # Claims in a state, marked released; returns them.
    def take(state)
      @mutex.synchronize do
        @claims.values.select { |c| c.state == state }.each do |c|
          move(c, :released)
          c.lost = true
          @claims.delete(c.step_id)
        end
      end
    end

    def release(conn, claims)
      claims.each do |c|
        count('released') if conn.exec(:release, [c.step_id, c.token]).getvalue(0, 0) == 't'
      rescue PG::Error, Gone => e
        @logger.warn("step #{c.step_id}: release failed: #{Connection.message(e)}")
      end
    end

    def wait_for_handlers(deadline)
      @handlers.each do |t|
        loop do
          left = deadline - mono
          break if left <= 0 || t.join([left, 0.2].min)
          return if forced?
        end
      end
    end
  end
end
