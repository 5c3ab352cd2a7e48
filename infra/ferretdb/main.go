// Command ferretdb-embedded runs FerretDB v1.24 (MongoDB wire protocol over SQLite) through its
// embeddable package. The project builds this small wrapper instead of FerretDB's own command:
// that command refuses to start when built with `go install …@version`, because its version
// file is not part of the module. Used for the dev stack and the tests; production runs MongoDB.
//
// It also gives every collection an index on the expression FerretDB's `_id` lookups compare
// (see idindex.go), so find/update/delete by `_id` are index searches instead of table scans;
// `--no-id-index` turns that off (the benchmark baseline). `ferretdb-embedded explain --sqlite-dir
// DIR --db NAME --collection NAME` prints SQLite's plan for those lookups on one collection.
//
// And it chooses SQLite's `synchronous` setting (`--sqlite-synchronous`), which FerretDB leaves at
// SQLite's default, FULL: in WAL mode (FerretDB's default) that is an fsync of the WAL at every
// commit. The wrapper's default is NORMAL: the WAL is synced only at checkpoints. What it gives up:
// nothing on a crash of this process or of the service (a committed transaction is in the WAL, in
// the OS page cache, and the next open replays it); on a power loss or kernel crash, the last
// transactions committed before the cut may be missing, the database itself stays consistent.
// `--sqlite-synchronous full` is FerretDB's behaviour (durable at every commit, at an fsync each).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "explain" {
		os.Exit(explainMain(os.Args[2:]))
	}

	listen := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	dir := flag.String("sqlite-dir", "", "directory for the SQLite files (one per database); required")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	noIDIndex := flag.Bool("no-id-index", false, "do not add the _id lookup index to collections (baseline runs)")
	synchronous := flag.String("sqlite-synchronous", "normal",
		"SQLite synchronous setting: normal (WAL synced at checkpoints; a power loss may lose the last commits) "+
			"or full (FerretDB's default: an fsync per commit)")
	flag.Usage = func() {
		out := flag.CommandLine.Output()
		fmt.Fprintln(out, "Usage: ferretdb-embedded --sqlite-dir DIR [flags]")
		fmt.Fprintln(out, "       ferretdb-embedded explain --sqlite-dir DIR --db NAME --collection NAME")
		flag.PrintDefaults()
	}
	flag.Parse()

	if *dir == "" {
		fmt.Fprintln(os.Stderr, "ferretdb-embedded: --sqlite-dir is required")
		os.Exit(2)
	}
	if *synchronous != "normal" && *synchronous != "full" {
		fmt.Fprintf(os.Stderr, "ferretdb-embedded: --sqlite-synchronous must be normal or full, not %q\n", *synchronous)
		os.Exit(2)
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb-embedded:", err)
		os.Exit(1)
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb-embedded: bad --log-level:", err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Handler:   "sqlite",
		SQLiteURL: sqliteURL(*dir, *synchronous),
		Logger:    logger,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb-embedded:", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Existing collections get their index before the first client connects; new ones within a
	// watch interval of their creation.
	waitIndexer := func() {}
	if !*noIDIndex {
		waitIndexer = newIDIndexer(*dir, logger).run(ctx)
	}

	// The line the launchers wait for.
	fmt.Println("ferretdb-embedded listening", f.MongoDBURI())
	err = f.Run(ctx)
	stop()
	waitIndexer()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb-embedded:", err)
		os.Exit(1)
	}
}

// sqliteURL is FerretDB's `--sqlite-url` for dir. FerretDB opens every database with this URL's
// query plus its own defaults for what it does not name (busy_timeout(10000), journal_mode(wal),
// auto_vacuum(none)); the driver runs each `_pragma` on every new connection, and `synchronous` is
// a per-connection setting, so every pooled connection gets it. Set before journal_mode(wal): an
// explicitly set value survives the switch to WAL.
func sqliteURL(dir, synchronous string) string {
	q := url.Values{}
	q.Add("_pragma", "synchronous("+synchronous+")")
	return "file:" + dir + "/?" + q.Encode()
}

// explainMain is the `explain` subcommand; returns the exit code.
func explainMain(args []string) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	dir := fs.String("sqlite-dir", "", "directory of the SQLite files; required")
	db := fs.String("db", "", "database name; required")
	coll := fs.String("collection", "", "collection name; required")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" || *db == "" || *coll == "" {
		fmt.Fprintln(os.Stderr, "ferretdb-embedded explain: --sqlite-dir, --db and --collection are required")
		return 2
	}
	if err := explain(context.Background(), *dir, *db, *coll); err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb-embedded explain:", err)
		return 1
	}
	return 0
}
