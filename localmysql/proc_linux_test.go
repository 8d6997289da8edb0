package localmysql

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The helper process starts a server, prints its directory and waits to be
// killed.
func TestServerDiesWithParent(t *testing.T) {
	if os.Getenv("LOCALMYSQL_HELPER") == "1" {
		s, err := Start(context.Background(), Options{})
		if err != nil {
			// One line: the parent reads only the first.
			fmt.Println("error:", strings.ReplaceAll(err.Error(), "\n", " | "))
			os.Exit(1)
		}
		fmt.Println(s.Dir)
		select {}
	}
	t.Parallel()
	helper := exec.Command(os.Args[0], "-test.run=^TestServerDiesWithParent$")
	helper.Env = append(os.Environ(), "LOCALMYSQL_HELPER=1")
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "/") {
		helper.Process.Kill()
		t.Fatalf("helper said %q, %v", line, err)
	}
	dir := strings.TrimSpace(line)
	t.Cleanup(func() { os.RemoveAll(dir) })
	pid := pidOf(t, dir)

	helper.Process.Kill()
	helper.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			exec.Command("kill", "-9", pid).Run()
			t.Fatalf("mariadbd %s still runs 5s after its parent died", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid runs; a zombie nobody has reaped yet counts as
// dead.
func alive(pid string) bool {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return false
	}
	// "pid (comm) S ..."
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
