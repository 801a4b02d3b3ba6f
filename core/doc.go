// Package core is what a luksdock operation IS, whoever asks for it: the
// `luksdock` commands (package main, thin shells that parse flags and map
// errors to exit codes) and the wizard (package ui) call the same functions
// with the same inputs, and neither holds orchestration of its own.
//
// A prepare (prepare.go) is: looking the target up (Lookup, DeviceTarget:
// dm-crypt mappings a killed luksdock left are tidied first), checking the
// label against the rotation set in the inventory (a clash is refused, also
// by --dry-run), generating the recovery key, the pipeline's plan, running
// it, and recording the verified disk in the inventory. Recognise
// (recognise.go) looks docked LUKS disks up in the inventory for `list`.
// Strength (strength.go) is the one passphrase estimate (zxcvbn) the CLI
// and the wizard show.
//
// What a command's flags mean is core's too, so that package main only
// binds them: which combinations are usage errors (args.go: CheckPrepareArgs,
// CheckRetireArgs, ...), how a secret is read from a file or standard input
// (secret.go: ReadPassphrase, SecretFiles), how a prepare run is journalled
// (RunJournaled) and which enrollment method the flags choose (EnrollHost).
//
// The disk work itself is package pipeline's; core decides what is asked of
// it.
package core
