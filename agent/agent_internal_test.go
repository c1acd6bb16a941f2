package agent

import (
	"os"
	"strconv"
	"testing"
)

func TestEarlierProjector(t *testing.T) {
	self := "web1-" + strconv.Itoa(os.Getpid())
	earlier := earlierProjector("web1")
	for consumer, want := range map[string]bool{
		"web1-1234":   true,  // an earlier process on this host
		self:          false, // this one
		"web1-":       false,
		"web1-2-1234": false, // host web1-2
		"web1-x":      false,
		"web2-1234":   false,
		"web1":        false,
	} {
		if got := earlier(consumer); got != want {
			t.Errorf("earlierProjector(web1)(%q) = %v, want %v", consumer, got, want)
		}
	}
}
