// The netspec extension: the grammar and language configuration are declared in package.json;
// this starts `netspec lsp` for .net files and passes the `netspec.*` settings to it.
"use strict";

const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const config = vscode.workspace.getConfiguration("netspec");
  const command = config.get("path", "netspec");
  client = new LanguageClient(
    "netspec",
    "netspec",
    { command, args: ["lsp"] },
    {
      documentSelector: [
        { scheme: "file", language: "netspec" },
        { scheme: "untitled", language: "netspec" },
      ],
      // Settings changes reach the server as workspace/didChangeConfiguration.
      synchronize: { configurationSection: "netspec" },
      initializationOptions: {
        netspec: {
          inlayHints: config.get("inlayHints"),
          allowOutsideImports: config.get("allowOutsideImports"),
          debounceMs: config.get("debounceMs"),
        },
      },
    },
  );
  context.subscriptions.push(client);
  return client.start().catch((err) => {
    vscode.window.showErrorMessage(
      `netspec: could not start \`${command} lsp\` (${err.message}). ` +
        "Install netspec with its lsp extra (pip install 'netspec[lsp]') or set netspec.path.",
    );
  });
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
