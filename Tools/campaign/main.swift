import CampaignEngine
import CampaignDomain
import Foundation

var args = Array(CommandLine.arguments.dropFirst())
guard args.first == "apply" else { print("usage: campaign apply --data DIR [--now T]"); exit(64) }
args.removeFirst()
var data = "./campaign-data"
var now: Date?
while let flag = args.first {
    args.removeFirst()
    switch flag {
    case "--data": data = args.removeFirst()
    case "--now": now = Timestamp.parse(args.removeFirst())
    default: exit(64)
    }
}
let clock: any EngineClock = now.map { ManualClock($0) } ?? SystemClock()
let engine = try CampaignEngine(directory: data, configuration: EngineConfiguration(clock: clock))
while let line = readLine(strippingNewline: true) {
    if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
    print(await engine.handle(line: line))
}
engine.close()
