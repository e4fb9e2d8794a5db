import Foundation

/// A command line's words after the subcommand: positionals, `--option value` pairs and flags.
public struct Arguments: Equatable, Sendable {
    /// Words that are not options.
    public var positionals: [String] = []
    /// Options with their values (`--data DIR` → `["data": "DIR"]`; `--data=DIR` also works).
    public var options: [String: String] = [:]
    /// Options without values (`--json`).
    public var flags: Set<String> = []

    /// A wrong command line: exit code 64.
    public struct UsageError: Error, Equatable, CustomStringConvertible {
        /// What is wrong with the command line, in a sentence (the CLI adds `run campaign X --help`).
        public var message: String
        /// The message, as printed.
        public var description: String { message }
    }

    /// Parses `words` accepting only the given options (which take a value) and flags.
    public static func parse(
        _ words: [String], options: Set<String>, flags: Set<String>
    ) throws(UsageError) -> Arguments {
        var parsed = Arguments()
        var index = 0
        while index < words.count {
            let word = words[index]
            index += 1
            guard word.hasPrefix("--"), word.count > 2 else {
                if word.hasPrefix("-") && word != "-" { throw UsageError(message: "unknown option \(word)") }
                parsed.positionals.append(word)
                continue
            }
            var name = String(word.dropFirst(2))
            var inlineValue: String?
            if let equals = name.firstIndex(of: "=") {
                inlineValue = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            if flags.contains(name) {
                guard inlineValue == nil else { throw UsageError(message: "--\(name) takes no value") }
                parsed.flags.insert(name)
            } else if options.contains(name) {
                let value: String
                if let inlineValue {
                    value = inlineValue
                } else {
                    guard index < words.count, !words[index].hasPrefix("--") else {
                        throw UsageError(message: "--\(name) needs a value")
                    }
                    value = words[index]
                    index += 1
                }
                guard parsed.options.updateValue(value, forKey: name) == nil else {
                    throw UsageError(message: "--\(name) is given twice")
                }
            } else {
                throw UsageError(message: "unknown option --\(name)")
            }
        }
        return parsed
    }
}
