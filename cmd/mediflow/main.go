// Command mediflow is the EHR integration engine: one binary that runs the
// engine (serve), the EHR simulator (sim), a one-command demo, config lint,
// key management and benchmarks.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand. Each lives in its own cmd_*.go file and is listed
// in commands(); its flags and --help text come from the same definition.
type command struct {
	name    string
	summary string // one line, shown in `mediflow --help`
	usage   string // argument synopsis after the flags, e.g. "FILE"
	long    string // paragraphs shown in `mediflow NAME --help`
	// flags defines the command's flags on fs and returns a function that runs
	// the command once fs is parsed; args are the positional arguments.
	flags func(fs *flag.FlagSet) func(ctx context.Context, env *cliEnv, args []string) error
	// subs, when set, makes this a group: `mediflow NAME SUB ...` runs a
	// subcommand and flags is unused.
	subs []*command
}

// cliEnv is what a command may touch of the outside world, so tests can run
// commands in-process.
type cliEnv struct {
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

func commands() []*command {
	cmds := []*command{
		versionCmd(),
		lintCmd(),
		keysCmd(),
		simCmd(),
		serveCmd(),
		demoCmd(),
		benchCmd(),
		hl7Cmd(),
		fhirpathCmd(),
		mappingCmd(),
		bulkCmd(),
		writebackCmd(),
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	return cmds
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := &cliEnv{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	os.Exit(run(ctx, env, os.Args[1:]))
}

// errUsage marks an error caused by how the command was called (exit code 2).
var errUsage = errors.New("usage")

// run dispatches args to a subcommand and returns the process exit code.
func run(ctx context.Context, env *cliEnv, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) > 1 && args[0] == "help" {
			return run(ctx, env, []string{args[1], "--help"})
		}
		printTopHelp(env.stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	return runCommand(ctx, env, "mediflow", commands(), args)
}

// runCommand runs args[0] from cmds (prefix is the command path so far, for
// messages) and returns the exit code.
func runCommand(ctx context.Context, env *cliEnv, prefix string, cmds []*command, args []string) int {
	for _, c := range cmds {
		if c.name != args[0] {
			continue
		}
		if c.subs != nil {
			path := prefix + " " + c.name
			if len(args) < 2 || args[1] == "-h" || args[1] == "--help" || args[1] == "help" {
				printGroupHelp(env.stdout, path, c)
				if len(args) < 2 {
					return 2
				}
				return 0
			}
			return runCommand(ctx, env, path, c.subs, args[1:])
		}
		c := c
		full := prefix + " " + c.name
		fs := flag.NewFlagSet(full, flag.ContinueOnError)
		fs.SetOutput(env.stderr)
		runFn := c.flags(fs)
		fs.Usage = func() { printCmdHelp(env.stdout, full, c, fs) }
		if err := fs.Parse(args[1:]); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if err := runFn(ctx, env, fs.Args()); err != nil {
			fmt.Fprintf(env.stderr, "%s: %v\n", full, err)
			if errors.Is(err, errUsage) {
				return 2
			}
			return 1
		}
		return 0
	}
	fmt.Fprintf(env.stderr, "%s: unknown command %q (run `%s --help` for the list)\n", prefix, args[0], prefix)
	return 2
}

func printGroupHelp(w io.Writer, path string, c *command) {
	fmt.Fprintf(w, "%s — %s\n\nUsage: %s COMMAND [flags] [args]\n", path, c.summary, path)
	if c.long != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.long))
	}
	fmt.Fprintln(w, "\nCommands:")
	for _, s := range c.subs {
		fmt.Fprintf(w, "  %-9s %s\n", s.name, s.summary)
	}
	fmt.Fprintf(w, "\nRun `%s COMMAND --help` for a command's flags.\n", path)
}

func printTopHelp(w io.Writer) {
	fmt.Fprintln(w, "mediflow — EHR integration engine")
	fmt.Fprintln(w, "\nUsage: mediflow COMMAND [flags] [args]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun `mediflow COMMAND --help` for a command's flags.")
}

func printCmdHelp(w io.Writer, full string, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "%s — %s\n\nUsage: %s [flags] %s\n", full, c.summary, full, c.usage)
	if c.long != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.long))
	}
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprintln(w, "\nFlags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
}

// usagef returns an error that makes the command exit with status 2.
func usagef(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}
