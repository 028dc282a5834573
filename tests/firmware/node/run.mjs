// Runs a MicroPython script in the WebAssembly port of MicroPython (npm: @micropython/micropython-webassembly-pyscript),
// with folders of the host copied into the port's virtual file system first:
//   node run.mjs SCRIPT.py HOST_DIR:VFS_DIR ...
// MicroPython's own sys.path ('', '.frozen', '/lib') finds what is copied to /lib. The script's output goes to
// stdout; an exception that escapes it is printed as MicroPython's traceback and the exit code is 1.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const [script, ...mounts] = process.argv.slice(2);
if (!script) {
  console.error("usage: node run.mjs SCRIPT.py HOST_DIR:VFS_DIR ...");
  process.exit(2);
}
const mp = await loadMicroPython({
  heapsize: 8 * 1024 * 1024,
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});

function makeDirs(path) {
  let at = "";
  for (const part of path.split("/").filter(Boolean)) {
    at += "/" + part;
    try {
      mp.FS.mkdir(at);
    } catch {
      // exists
    }
  }
}

function copy(hostDir, vfsDir) {
  makeDirs(vfsDir);
  for (const name of readdirSync(hostDir)) {
    const from = join(hostDir, name);
    if (statSync(from).isFile()) {
      mp.FS.writeFile(vfsDir + "/" + name, readFileSync(from));
    }
  }
}

for (const mount of mounts) {
  const at = mount.lastIndexOf(":");
  copy(mount.slice(0, at), mount.slice(at + 1));
}
try {
  mp.runPython(readFileSync(script, "utf8"));
} catch (error) {
  if (error.name !== "PythonError") throw error;
  console.log(error.message); // MicroPython's traceback, without the port's JavaScript around it
  process.exit(1);
}
