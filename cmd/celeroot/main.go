// Command celeroot manages a fleet of hosts through Redis Streams.
package main

import (
	"os"

	"github.com/celeroot/celeroot/ctl"
)

func main() { os.Exit(ctl.Main()) }
