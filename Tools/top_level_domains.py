#!/usr/bin/env python3
"""Writes Sources/CampaignDomain/Social/TopLevelDomains.swift: the top-level domains X links a bare
domain on (README, "Social publishing"), read from the ICANN section of the Public Suffix List
(Debian's `publicsuffix` package, /usr/share/publicsuffix/public_suffix_list.dat): the last label
of each rule there is a top-level domain of IANA's root zone (`za` appears only in `co.za` and its
like). Run it again when the list moves on."""
import os, subprocess, sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
source = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/publicsuffix/public_suffix_list.dat"
names = set()
version = "the list as given"
if len(sys.argv) == 1:
    package = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "publicsuffix"], capture_output=True, text=True)
    version = "Debian's publicsuffix " + package.stdout.strip() if package.returncode == 0 else version
for line in open(source, encoding="utf-8"):
    line = line.strip()
    if "===END ICANN DOMAINS===" in line:
        break
    if not line or line.startswith("//"):
        continue
    names.add(line.split(".")[-1].lstrip("!*"))
ascii_names = sorted(n for n in names if n.isascii())
other_names = sorted(n for n in names if not n.isascii())


def lines(words, indent):
    out, line = [], ""
    for word in words:
        candidate = word if not line else line + " " + word
        if len((indent + candidate + " ").encode("utf-8")) > 116:
            out.append(line)
            line = word
        else:
            line = candidate
    if line:
        out.append(line)
    return "\n".join(indent + l for l in out)


swift = f'''/// The top-level domains of IANA's root zone, as the ICANN section of the Public Suffix List names
/// them ({version}, read by `Tools/top_level_domains.py`).
/// X links a domain only when it ends in one of these (``TextMeasure/links(in:)``).
enum TopLevelDomains {{
    /// The ASCII ones, lowercase: {len(ascii_names)} ({sum(1 for n in ascii_names if len(n) == 2)} of two letters, the countries').
    static let ascii: Set<String> = names(
        """
{lines(ascii_names, "        ")}
        """)

    /// The internationalised ones, in their own scripts: {len(other_names)}.
    static let international: Set<String> = names(
        """
{lines(other_names, "        ")}
        """)

    /// The longest internationalised one, in Unicode scalars.
    static let longestInternational = international.map(\\.unicodeScalars.count).max() ?? 0

    private static func names(_ list: String) -> Set<String> {{
        Set(list.split(whereSeparator: \\.isWhitespace).map(String.init))
    }}
}}
'''
with open(os.path.join(root, "Sources/CampaignDomain/Social/TopLevelDomains.swift"), "w", encoding="utf-8") as f:
    f.write(swift)
print(f"{len(ascii_names)} ASCII and {len(other_names)} internationalised top-level domains ({version})")
