package bench_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/dlflow/dlflow/cmd"
)

// TestMain lets this test binary act as the dlflow CLI when the bench runs
// it as a child process (RUN_DLFLOW_CLI=1, as package cmd's own binary
// does); package bench itself does not import cmd. After the tests it
// fails the run if any goroutine leaked.
func TestMain(m *testing.M) {
	if os.Getenv("RUN_DLFLOW_CLI") == "1" {
		cmd.Main()
		return
	}
	goleak.VerifyTestMain(m)
}
