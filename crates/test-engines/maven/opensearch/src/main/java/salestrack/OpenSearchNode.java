package salestrack;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.common.settings.Settings;
import org.opensearch.index.mapper.MapperExtrasPlugin;
import org.opensearch.index.reindex.ReindexPlugin;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.painless.PainlessPlugin;
import org.opensearch.transport.Netty4Plugin;

/**
 * One OpenSearch 2.19 node for the tests, without a distribution: the server
 * jar and the modules salestrack's read store needs, loaded from the class
 * path as plugins.
 *
 * <p>Usage: {@code OpenSearchNode <home> <http port> <transport port>} for a
 * single node, or, for a node of a cluster, followed by {@code <node name>
 * <roles> <seed transport ports> <initial cluster manager>}: roles as
 * {@code node.roles} takes them ({@code cluster_manager,data}), the seeds'
 * ports comma-separated on 127.0.0.1. The data lives in {@code <home>/data};
 * a restart over the same home finds its indices again. It runs until
 * killed (SIGTERM closes the node cleanly).
 */
public final class OpenSearchNode {
    /** Node's plugin constructor is protected: a subclass reaches it. */
    private static final class ClasspathNode extends Node {
        ClasspathNode(Settings settings, Path config) {
            super(
                InternalSettingsPreparer.prepareEnvironment(settings, Map.of(), config, () -> "salestrack-test"),
                List.of(
                    Netty4Plugin.class,
                    CommonAnalysisPlugin.class,
                    MapperExtrasPlugin.class,
                    PainlessPlugin.class,
                    ReindexPlugin.class
                ),
                true
            );
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 3 && args.length != 7) {
            System.err.println("usage: OpenSearchNode <home> <http port> <transport port>"
                + " [<node name> <roles> <seed transport ports> <initial cluster manager>]");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        for (String dir : List.of("config", "data", "logs", "modules", "plugins")) {
            Files.createDirectories(home.resolve(dir));
        }
        Settings.Builder settings = Settings.builder()
            .put("cluster.name", "salestrack-test")
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("network.host", "127.0.0.1")
            .put("http.port", args[1])
            .put("transport.port", args[2])
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .put("indices.breaker.total.use_real_memory", false)
            .put("action.auto_create_index", true);
        if (args.length == 3) {
            settings
                .put("node.name", "salestrack-test")
                .put("discovery.type", "single-node")
                // One node: replicas could never be assigned.
                .put("cluster.default_number_of_replicas", 0);
        } else {
            List<String> seeds = new ArrayList<>();
            for (String port : args[5].split(",")) {
                seeds.add("127.0.0.1:" + port);
            }
            settings
                .put("node.name", args[3])
                .putList("node.roles", List.of(args[4].split(",")))
                .putList("discovery.seed_hosts", seeds)
                .putList("cluster.initial_cluster_manager_nodes", List.of(args[6]))
                // A node that left is noticed in seconds, not after
                // three missed 10 s pings (the connection closes anyway
                // on SIGKILL; this bounds a hung node too).
                .put("cluster.fault_detection.follower_check.interval", "1s")
                .put("cluster.fault_detection.follower_check.timeout", "5s");
        }
        Node node = new ClasspathNode(settings.build(), home.resolve("config"));
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
            } catch (Exception e) {
                e.printStackTrace();
            }
            stopped.countDown();
        }));
        node.start();
        System.out.println("salestrack: OpenSearch node started on http://127.0.0.1:" + args[1]);
        stopped.await();
    }
}
