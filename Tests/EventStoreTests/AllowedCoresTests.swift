import Testing

@testable import EventStore

/// The CPUs a thread may run on, read from its `Cpus_allowed` mask: what decides whether the writer
/// watches for requests, and which cores `campaign-bench` holds its wake-measuring threads to.
@Suite struct AllowedCoresTests {
    /// The mask is hexadecimal words of 32 bits, the most significant first: each digit's bits are
    /// four CPUs, counted from the end of the line.
    @Test func theMaskNamesEachAllowedCPU() {
        let status = "Name:\tcampaign\nCpus_allowed:\t00000001,8000000a\nCpus_allowed_list:\t1,3,31,32\n"
        #expect(GroupCommitter.allowedCores(inStatus: status) == [1, 3, 31, 32])
        #expect(GroupCommitter.allowedCores(inStatus: "Cpus_allowed:\tf\n") == [0, 1, 2, 3])
        #expect(GroupCommitter.allowedCores(inStatus: "Cpus_allowed:\t00000000\n") == nil)
        #expect(GroupCommitter.allowedCores(inStatus: "Name:\tcampaign\n") == nil)
    }

    /// This machine's own mask names at least the CPU the test runs on, and as many as the writer
    /// counts.
    @Test func thisThreadsMaskIsReadAndCounted() {
        let cores = EventStore.allowedCores
        #expect(!cores.isEmpty && cores == cores.sorted())
        #expect(GroupCommitter.usableCores == cores.count)
    }
}
