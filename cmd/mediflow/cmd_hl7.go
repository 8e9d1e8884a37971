package main

// hl7Cmd groups the HL7 v2 tools: parse a file, send to an MLLP peer, listen,
// search the message store and replay stored messages.
func hl7Cmd() *command {
	return &command{
		name:    "hl7",
		summary: "HL7 v2 tools: parse, send, listen, messages, replay",
		long:    `HL7 v2 over MLLP. Each subcommand has its own --help.`,
		subs: []*command{
			hl7ParseCmd(),
			hl7SendCmd(),
			hl7ListenCmd(),
			hl7MessagesCmd(),
			hl7ReplayCmd(),
		},
	}
}
