// Command tag is a Tickwire server that offers the tag mode first, then
// the built-in ones, with every flag of `tickwire serve`.
package main

import "github.com/tickwire/tickwire/server"

func main() { server.Main(Spec()) }
