// swift-tools-version:6.0
import PackageDescription

// Layers (SPEC.md §2): CLMDB ← EventStore ← {CampaignProjections, CampaignSnapshots} ← CampaignEngine ← tools.
// `Hashing` is an addition to the spec's table: SHA-256 is needed both by `EventStore` (the hash chain)
// and by the pure `CampaignDomain` (commitments, sticky experiment buckets), and neither layer may
// depend on the other, so the digest lives in its own target. `CSHA256` is the project's own C for the
// CPU's SHA extensions (intrinsics, chosen at run time by CPUID); `Hashing` falls back to Swift without.
// `Signing` (Ed25519, signed notes, checkpoints) is another addition: the operator's key signs the log's
// Merkle tree heads, and the key never enters the store, so only the CLI and the engine link it (and
// the NATS client, whose NKEY authentication signs a server's nonce with a user's Ed25519 seed).
// `CMalloc` exposes glibc's `malloc_trim`, which Swift's Glibc module leaves out: a rebuild hands the
// memory of each finished fold back to the system (each lane's thread has its own allocator arena).
// `CSharedCounters` holds atomic operations on memory several processes map: the engine's rate-limit
// windows live in a file beside the store, so processes on one store share each tenant's budget.
// `Spawn` starts child processes with `posix_spawn` and reaps them on threads of its own (`CSpawn` holds
// the glibc calls Swift does not import): `Foundation.Process` watches children through a libdispatch
// source that now and then crashed the parent. `campaign verify`'s guarded child, the crash harness,
// the local `nats-server`, the benchmark and the tests all start their children through it.
let package = Package(
    name: "CampaignEngine",
    products: [
        .library(name: "CampaignEngine", targets: ["CampaignEngine"]),
        .executable(name: "campaign", targets: ["campaign"]),
        .executable(name: "campaign-bench", targets: ["campaign-bench"]),
        .executable(name: "campaign-harness", targets: ["campaign-harness"]),
    ],
    targets: [
        .systemLibrary(
            name: "CLMDB",
            path: "Sources/CLMDB",
            pkgConfig: "lmdb",
            providers: [.apt(["liblmdb-dev"])]
        ),
        .systemLibrary(name: "CMalloc", path: "Sources/CMalloc"),
        .target(name: "CSHA256"),
        .target(name: "Hashing", dependencies: ["CSHA256"]),
        .target(name: "Signing", dependencies: ["Hashing"]),
        .target(name: "EventStore", dependencies: ["CLMDB", "Hashing"]),
        .target(name: "CSpawn"),
        .target(name: "CSharedCounters"),
        .target(name: "Spawn", dependencies: ["CSpawn"]),
        .target(name: "NATS", dependencies: ["Signing", "Spawn"]),
        .target(name: "CampaignDomain", dependencies: ["Hashing"]),
        .target(
            name: "CampaignProjections",
            dependencies: ["EventStore", "CampaignDomain", "Hashing", "CMalloc"],
            path: "Projections"
        ),
        .target(
            name: "CampaignSnapshots",
            dependencies: ["EventStore", "CampaignDomain"],
            path: "Snapshots"
        ),
        .target(
            name: "CampaignEngine",
            dependencies: [
                "EventStore", "CampaignDomain", "CampaignProjections", "CampaignSnapshots", "Hashing", "Signing",
                "CSharedCounters",
            ]
        ),
        .target(
            name: "CampaignCLI",
            dependencies: [
                "CampaignEngine", "CampaignDomain", "CampaignProjections", "EventStore", "Hashing", "NATS", "Signing",
                "Spawn",
            ]),
        .executableTarget(name: "campaign", dependencies: ["CampaignCLI"], path: "Tools/campaign"),
        .executableTarget(
            name: "campaign-bench",
            dependencies: [
                "CampaignEngine", "CampaignDomain", "CampaignProjections", "CampaignSnapshots", "EventStore", "CLMDB",
                "Hashing", "CampaignCLI", "NATS", "Spawn",
            ],
            path: "Tools/bench",
            exclude: ["peer.py", "HISTORY.md"]
        ),
        .executableTarget(
            name: "campaign-harness",
            dependencies: ["CampaignEngine", "CampaignCLI", "CampaignProjections", "EventStore", "Spawn"],
            path: "Tools/harness"
        ),
        .target(name: "TestSupport", dependencies: ["NATS", "Signing", "Spawn"], path: "Tests/TestSupport"),
        .testTarget(name: "SpawnTests", dependencies: ["Spawn", "TestSupport", "campaign-harness"]),
        .testTarget(name: "HashingTests", dependencies: ["Hashing"]),
        .testTarget(name: "SigningTests", dependencies: ["Signing", "Hashing"]),
        .testTarget(name: "NATSTests", dependencies: ["NATS", "TestSupport"]),
        .testTarget(
            name: "EventStoreTests",
            dependencies: ["EventStore", "Hashing", "Spawn", "TestSupport", "campaign-harness"],
            exclude: ["Fixtures"]),
        .testTarget(name: "CampaignDomainTests", dependencies: ["CampaignDomain"]),
        .testTarget(
            name: "CampaignEngineTests",
            dependencies: [
                "CampaignEngine", "CampaignDomain", "CampaignProjections", "CampaignSnapshots", "EventStore",
                "CampaignCLI", "NATS", "Hashing", "Signing", "Spawn",
                "TestSupport", "campaign", "campaign-harness",
            ],
            exclude: ["Fixtures"]),
    ],
    swiftLanguageModes: [.v6]
)
