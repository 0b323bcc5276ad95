// Command portcullis is the one Portcullis binary: the proxy and console server (serve),
// the demo (demo), the policy-as-code tools (policy check|test|explain) and the audit
// tools (audit verify|export). Run `portcullis --help` or `portcullis COMMAND --help`.
package main
