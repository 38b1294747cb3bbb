// JGit with JSch (Debian's libjgit-java and libjsch-java) as a git client:
// compiled by the suite with javac against the jars in /usr/share/java.
//
//   java JGitInterop push  KEY KNOWN_HOSTS REPO_DIR URL
//   java JGitInterop clone KEY KNOWN_HOSTS URL DIR
//   java JGitInterop fetch KEY KNOWN_HOSTS REPO_DIR
//
// KEY is a PEM private key (JSch 0.1.x reads no OpenSSH-format key; an
// ECDSA P-256 key, since JSch 0.1.54 has no ed25519 and signs RSA only with
// SHA-1). KNOWN_HOSTS pins the server's host key (StrictHostKeyChecking
// yes). JSch's own log lines about the negotiated algorithms go to stderr.

import com.jcraft.jsch.JSch;
import com.jcraft.jsch.JSchException;
import com.jcraft.jsch.Logger;
import com.jcraft.jsch.Session;
import java.io.File;
import org.eclipse.jgit.api.Git;
import org.eclipse.jgit.api.TransportConfigCallback;
import org.eclipse.jgit.transport.JschConfigSessionFactory;
import org.eclipse.jgit.transport.OpenSshConfig;
import org.eclipse.jgit.transport.PushResult;
import org.eclipse.jgit.transport.RefSpec;
import org.eclipse.jgit.transport.RemoteRefUpdate;
import org.eclipse.jgit.transport.SshTransport;
import org.eclipse.jgit.util.FS;

public class JGitInterop {
    public static void main(String[] args) throws Exception {
        String op = args[0];
        final String key = args[1];
        final String knownHosts = args[2];
        JSch.setLogger(new Logger() {
            public boolean isEnabled(int level) {
                return true;
            }

            public void log(int level, String message) {
                if (message.startsWith("kex: server->client") || message.startsWith("kex: client->server")
                        || message.contains("Authentication succeeded")
                        || level >= Logger.WARN) {
                    System.err.println("jsch: " + message);
                }
            }
        });
        final JschConfigSessionFactory factory = new JschConfigSessionFactory() {
            @Override
            protected void configure(OpenSshConfig.Host host, Session session) {
                session.setConfig("StrictHostKeyChecking", "yes");
                session.setConfig("PreferredAuthentications", "publickey");
            }

            @Override
            protected JSch createDefaultJSch(FS fs) throws JSchException {
                JSch jsch = new JSch();
                jsch.addIdentity(key);
                jsch.setKnownHosts(knownHosts);
                return jsch;
            }
        };
        TransportConfigCallback callback = transport -> ((SshTransport) transport).setSshSessionFactory(factory);

        switch (op) {
            case "push": {
                try (Git git = Git.open(new File(args[3]))) {
                    Iterable<PushResult> results = git.push()
                            .setRemote(args[4])
                            .setRefSpecs(new RefSpec("refs/heads/main:refs/heads/main"))
                            .setTransportConfigCallback(callback)
                            .setTimeout(30)
                            .call();
                    for (PushResult result : results) {
                        for (RemoteRefUpdate update : result.getRemoteUpdates()) {
                            System.out.println("push " + update.getRemoteName() + " " + update.getStatus());
                            if (update.getStatus() != RemoteRefUpdate.Status.OK
                                    && update.getStatus() != RemoteRefUpdate.Status.UP_TO_DATE) {
                                System.err.println("FAILED: push " + update.getStatus() + " " + update.getMessage());
                                System.exit(1);
                            }
                        }
                    }
                }
                break;
            }
            case "clone": {
                try (Git git = Git.cloneRepository()
                        .setURI(args[3])
                        .setDirectory(new File(args[4]))
                        .setTransportConfigCallback(callback)
                        .setTimeout(30)
                        .call()) {
                    org.eclipse.jgit.lib.ObjectId head = git.getRepository().resolve("HEAD");
                    System.out.println("clone HEAD " + (head == null ? "(unborn)" : head.name()));
                }
                break;
            }
            case "fetch": {
                try (Git git = Git.open(new File(args[3]))) {
                    git.fetch()
                            .setRemote("origin")
                            .setTransportConfigCallback(callback)
                            .setTimeout(30)
                            .call();
                    org.eclipse.jgit.lib.ObjectId main = git.getRepository().resolve("refs/remotes/origin/main");
                    System.out.println("fetch origin/main " + (main == null ? "(none)" : main.name()));
                }
                break;
            }
            default:
                System.err.println("FAILED: unknown operation " + op);
                System.exit(2);
        }
    }
}
