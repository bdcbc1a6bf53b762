package fake

import (
	"testing"

	"github.com/robotlauncher/launcher/executor"
	"github.com/robotlauncher/launcher/executor/executortest"
)

// TestConformanceFake: the fake honours the same machine contract as tmux
// (locally, over SSH, with Docker), so engine tests on it mean something.
func TestConformanceFake(t *testing.T) {
	m := New("local")
	m.Behave = func(spec executor.SpawnSpec) Behaviour { return Interpret(spec.Script) }
	executortest.Contract(t, executortest.Target{Machine: m, Session: "conf"})
}
