import CampaignEngine
import EventStore
import Foundation
import Synchronization

/// What a relay (`campaign export --to nats://…`) has done since it started, for its `--metrics`
/// file: an operator running it with `--follow` as a service alerts when it falls behind the log,
/// stops being acknowledged, or keeps reconnecting.
///
/// Every sample carries the relay's consumer name as the label `consumer` (the operator's name for
/// the relay, never a tenant's data), so the files of several relays can be collected side by side.
final class RelayMetrics: Sendable {
    private struct State {
        var connected = false
        var connections: UInt64 = 0
        var retries: UInt64 = 0
        var publishedEvents: UInt64 = 0
        var publishedCheckpoints: UInt64 = 0
        var acknowledged: UInt64 = 0
        var failures: UInt64 = 0
        var acknowledgementDurations = DurationHistogram()
        var lastAcknowledgement: Date?
        /// The current connection's window, for how far the log is acknowledged without a gap.
        var window: AckWindow?
    }

    private let state = Mutex(State())
    private let store: EventStore
    private let consumer: String

    /// Counts for the relay of `store` whose consumer is `consumer`.
    init(store: EventStore, consumer: String) {
        self.store = store
        self.consumer = consumer
    }

    /// A connection was made (the server took the relay's credentials, if it asked for any).
    func connected() {
        state.withLock {
            $0.connected = true
            $0.connections += 1
        }
    }

    /// The relay publishes on the connection now, `window` counting its acknowledgements.
    func relaying(_ window: AckWindow) { state.withLock { $0.window = window } }

    /// The connection ended (the run is over, or it failed).
    func disconnected() { state.withLock { $0.connected = false } }

    /// An attempt failed and the relay will try again.
    func retried() { state.withLock { $0.retries += 1 } }

    /// An event went out, followed by `checkpoints` signed checkpoints.
    func published(checkpoints: Int) {
        state.withLock {
            $0.publishedEvents += 1
            $0.publishedCheckpoints += UInt64(checkpoints)
        }
    }

    /// JetStream answered a publish sent `took` ago: acknowledged, or failed.
    func answered(acknowledged: Bool, took: Duration) {
        state.withLock {
            if acknowledged {
                $0.acknowledged += 1
                $0.acknowledgementDurations.record(took)
                $0.lastAcknowledgement = Date()
            } else {
                $0.failures += 1
            }
        }
    }

    /// The figures in Prometheus's text format, the log's head and the consumer's stored checkpoint
    /// read from the store now.
    func prometheusText(prefix: String = "campaign", constantLabels: [String: String] = [:]) throws -> String {
        let now = state.withLock { $0 }
        let head = try store.head().position
        let stored = try store.consumers().first { $0.name == consumer }?.position ?? 0
        let acknowledged = max(stored, now.window?.contiguous ?? 0)
        let label = ["consumer": consumer]
        var text = PrometheusText(prefix: prefix, constantLabels: constantLabels)
        text.family("relay_connected", .gauge, "1 while the relay is connected to a NATS server.")
        text.sample("relay_connected", label, now.connected ? 1 : 0)
        text.family("relay_connections_total", .counter, "Connections made to a NATS server.")
        text.sample("relay_connections_total", label, Double(now.connections))
        text.family(
            "relay_retries_total", .counter, "Attempts that failed (a lost server, a refused publish) and were retried."
        )
        text.sample("relay_retries_total", label, Double(now.retries))
        text.family("relay_messages_published_total", .counter, "Messages published: events and signed checkpoints.")
        text.sample(
            "relay_messages_published_total", label.merging(["kind": "event"]) { $1 }, Double(now.publishedEvents))
        text.sample(
            "relay_messages_published_total", label.merging(["kind": "checkpoint"]) { $1 },
            Double(now.publishedCheckpoints))
        text.family("relay_messages_acknowledged_total", .counter, "Publishes JetStream acknowledged.")
        text.sample("relay_messages_acknowledged_total", label, Double(now.acknowledged))
        text.family(
            "relay_publish_failures_total", .counter,
            "Publishes JetStream refused or that were lost with their connection.")
        text.sample("relay_publish_failures_total", label, Double(now.failures))
        text.family(
            "relay_acknowledgement_duration_seconds", .histogram, "Time from a publish to JetStream's acknowledgement.")
        text.histogram("relay_acknowledgement_duration_seconds", label, now.acknowledgementDurations)
        text.family(
            "relay_last_acknowledgement_timestamp_seconds", .gauge,
            "When JetStream last acknowledged a publish, in seconds since 1970 (0 before one).")
        text.sample(
            "relay_last_acknowledgement_timestamp_seconds", label, now.lastAcknowledgement?.timeIntervalSince1970 ?? 0)
        text.family(
            "relay_acknowledged_position", .gauge, "The last position acknowledged with every position before it.")
        text.sample("relay_acknowledged_position", label, Double(acknowledged))
        text.family(
            "relay_checkpoint_position", .gauge, "The consumer's stored checkpoint: a restarted relay resumes after it."
        )
        text.sample("relay_checkpoint_position", label, Double(stored))
        text.family("relay_log_head_position", .gauge, "The log's last position.")
        text.sample("relay_log_head_position", label, Double(head))
        text.family("relay_lag_events", .gauge, "Events of the log not yet acknowledged by JetStream.")
        text.sample("relay_lag_events", label, Double(head - min(head, acknowledged)))
        return text.output
    }
}
