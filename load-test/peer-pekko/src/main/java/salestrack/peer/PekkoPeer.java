package salestrack.peer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest.BodyPublishers;
import java.net.http.HttpResponse.BodyHandlers;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.Executor;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.cluster.sharding.typed.javadsl.Entity;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Join;
import org.apache.pekko.http.javadsl.Http;
import org.apache.pekko.http.javadsl.model.ContentTypes;
import org.apache.pekko.http.javadsl.model.HttpMethods;
import org.apache.pekko.http.javadsl.model.HttpRequest;
import org.apache.pekko.http.javadsl.model.HttpResponse;
import org.apache.pekko.http.javadsl.model.StatusCodes;
import org.apache.pekko.japi.function.Function;
import org.apache.pekko.stream.Materializer;

/**
 * {@code PekkoPeer ADDR KAFKA CASSANDRA OPENSEARCH RUN}: the benchmark peer on the real engines,
 * the design salestrack started from. A cart is an event-sourced entity of Apache Pekko
 * Persistence (typed), placed by cluster sharding (one node), journaled by the Pekko Cassandra
 * plugin. An accepted order line is persisted, then published to Kafka ({@code acks=all}); the
 * {@code 202} waits for both. A projector in the same process reads the topic and writes one
 * document per line to OpenSearch with {@code _bulk}, committing its offsets after each bulk.
 *
 * <p>It takes the same order-line JSON as salestrack's {@code POST /orders}, applies the same
 * placement rules as the PostgreSQL peer ({@code load-test/peer}), and {@code GET
 * /reports/sales} counts the lines OpenSearch holds, in the shape salestrack-bench reads. RUN
 * names its keyspace, topic, consumer group and index, so phases never share state.
 */
public final class PekkoPeer {
  static final ObjectMapper JSON = new ObjectMapper();

  /** The Kafka header naming a published line's order (the projector's document id). */
  static final String ORDER_ID = "order_id";

  private PekkoPeer() {}

  public static void main(String[] args) throws Exception {
    if (args.length != 5) {
      System.err.println("usage: PekkoPeer ADDR KAFKA CASSANDRA OPENSEARCH RUN");
      System.exit(2);
    }
    String[] addr = args[0].split(":");
    String kafka = args[1];
    String cassandra = args[2];
    String opensearch = args[3];
    String run = args[4];
    String topic = "peer-events-" + run;
    String index = "peer-lines-" + run;

    createTopic(kafka, topic);
    Projector projector = new Projector(kafka, topic, "peer-projector-" + run, opensearch, index);
    projector.createIndex();

    ActorSystem<Void> system = ActorSystem.create(Behaviors.empty(), "peer", config(cassandra, run));
    Cluster cluster = Cluster.get(system);
    cluster.manager().tell(Join.create(cluster.selfMember().address()));

    KafkaProducer<String, byte[]> producer = producer(kafka);
    ClusterSharding sharding = ClusterSharding.get(system);
    sharding.init(Entity.of(Cart.KEY, ctx -> Cart.create(ctx.getEntityId(), producer, topic)));

    Thread projecting = new Thread(projector, "projector");
    projecting.setDaemon(true);
    projecting.start();

    Routes routes = new Routes(sharding, projector, system.executionContext());
    Materializer mat = Materializer.matFromSystem(system);
    Function<HttpRequest, CompletionStage<HttpResponse>> handler = r -> routes.handle(r, mat);
    Http.get(system)
        .newServerAt(addr[0], Integer.parseInt(addr[1]))
        .bind(handler)
        .toCompletableFuture()
        .get();
  }

  /** One node of its own cluster on loopback; the journal in keyspace {@code peer_RUN}. */
  static Config config(String cassandra, String run) {
    String keyspace = "peer_" + run;
    return ConfigFactory.parseString(
            String.join(
                "\n",
                "pekko.loglevel = WARNING",
                "pekko.actor.provider = cluster",
                "pekko.remote.artery.canonical.hostname = \"127.0.0.1\"",
                "pekko.remote.artery.canonical.port = 0",
                "pekko.cluster.jmx.multi-mbeans-in-same-jvm = on",
                "pekko.actor.serializers.peer = \"salestrack.peer.EventSerializer\"",
                "pekko.actor.serialization-bindings { \"salestrack.peer.Cart$Placed\" = peer }",
                "pekko.persistence.journal.plugin = \"pekko.persistence.cassandra.journal\"",
                "pekko.persistence.snapshot-store.plugin = \"pekko.persistence.cassandra.snapshot\"",
                "pekko.persistence.cassandra.journal.keyspace = \"" + keyspace + "\"",
                "pekko.persistence.cassandra.journal.keyspace-autocreate = on",
                "pekko.persistence.cassandra.journal.tables-autocreate = on",
                "pekko.persistence.cassandra.snapshot.keyspace = \"" + keyspace + "_snapshot\"",
                "pekko.persistence.cassandra.snapshot.keyspace-autocreate = on",
                "pekko.persistence.cassandra.snapshot.tables-autocreate = on",
                // No query by tag: the projector reads Kafka.
                "pekko.persistence.cassandra.events-by-tag.enabled = off",
                "datastax-java-driver.basic.contact-points = [\"" + cassandra + "\"]",
                "datastax-java-driver.basic.load-balancing-policy.local-datacenter = datacenter1",
                "datastax-java-driver.advanced.reconnect-on-init = on"))
        .withFallback(ConfigFactory.load());
  }

  static KafkaProducer<String, byte[]> producer(String kafka) {
    Properties p = new Properties();
    p.put("bootstrap.servers", kafka);
    p.put("acks", "all");
    p.put("enable.idempotence", "true");
    // As salestrack's runner: a closed-loop client waits for every answer
    // (BENCHMARKS.md, "Kafka producer linger.ms: 0").
    p.put("linger.ms", "0");
    p.put("key.serializer", StringSerializer.class.getName());
    p.put("value.serializer", ByteArraySerializer.class.getName());
    return new KafkaProducer<>(p);
  }

  /** Four partitions, as salestrack-bench gives the runner. */
  static void createTopic(String kafka, String topic) throws Exception {
    Properties p = new Properties();
    p.put("bootstrap.servers", kafka);
    try (Admin admin = Admin.create(p)) {
      admin.createTopics(List.of(new NewTopic(topic, 4, (short) 1))).all().get();
    }
  }

  /** {@code POST /orders}, {@code GET /reports/sales}, {@code GET /health/ready}. */
  static final class Routes {
    final ClusterSharding sharding;
    final Projector projector;

    /**
     * Where the stages after a future run: the actor system's dispatcher. The stages Pekko hands
     * out come from Scala futures, whose non-async methods run asynchronously on the common
     * fork-join pool; with two cores that pool has a parallelism of 1, and CompletableFuture then
     * starts a new thread per stage (async-profiler showed a fifth of the peer's CPU in thread
     * starts).
     */
    final Executor executor;

    Routes(ClusterSharding sharding, Projector projector, Executor executor) {
      this.sharding = sharding;
      this.projector = projector;
      this.executor = executor;
    }

    CompletionStage<HttpResponse> handle(HttpRequest request, Materializer mat) {
      String path = request.getUri().path();
      if (request.method() == HttpMethods.POST && path.equals("/orders")) {
        return request
            .entity()
            .toStrict(10_000, mat)
            .thenComposeAsync(body -> place(body.getData().toArray()), executor);
      }
      request.discardEntityBytes(mat);
      if (request.method() == HttpMethods.GET && path.equals("/reports/sales")) {
        return projector
            .count()
            .thenApply(n -> json(StatusCodes.OK, "{\"buckets\":[{\"orders\":" + n + "}]}"))
            .exceptionally(e -> json(StatusCodes.SERVICE_UNAVAILABLE, error(e.toString())));
      }
      if (request.method() == HttpMethods.GET && path.equals("/health/ready")) {
        return CompletableFuture.completedFuture(json(StatusCodes.OK, "\"ready\""));
      }
      return CompletableFuture.completedFuture(json(StatusCodes.NOT_FOUND, error("no route")));
    }

    CompletionStage<HttpResponse> place(byte[] body) {
      Line line;
      try {
        line = Line.parse(body);
      } catch (Exception e) {
        return CompletableFuture.completedFuture(json(StatusCodes.BAD_REQUEST, error(e.getMessage())));
      }
      return sharding
          .entityRefFor(Cart.KEY, line.cartId)
          .<Cart.Reply>ask(replyTo -> new Cart.Place(line, replyTo), Duration.ofSeconds(30))
          .handleAsync(
              (reply, failure) -> {
                if (failure != null) {
                  return json(StatusCodes.SERVICE_UNAVAILABLE, error(failure.toString()));
                }
                if (reply.error != null) {
                  return json(StatusCodes.BAD_REQUEST, error(reply.error));
                }
                return json(
                    StatusCodes.ACCEPTED,
                    "{\"cart_id\":\"" + line.cartId + "\",\"consistency_token\":\"" + line.cartId + "\"}");
              },
              executor);
    }

    static String error(String message) {
      return JSON.createObjectNode().put("error", message).toString();
    }

    static HttpResponse json(org.apache.pekko.http.javadsl.model.StatusCode status, String body) {
      return HttpResponse.create().withStatus(status).withEntity(ContentTypes.APPLICATION_JSON, body);
    }
  }

  /**
   * The fields the rules need, and the line as compact JSON (one line, as {@code _bulk} takes
   * it): parsed once, here, and carried as bytes by the journal, Kafka and the projector.
   */
  static final class Line {
    final String orderId;
    final String cartId;
    final String userId;
    final String currency;
    final byte[] json;

    Line(String orderId, String cartId, String userId, String currency, byte[] json) {
      this.orderId = orderId;
      this.cartId = cartId;
      this.userId = userId;
      this.currency = currency;
      this.json = json;
    }

    static Line parse(byte[] json) throws java.io.IOException {
      JsonNode n = JSON.readTree(json);
      if (n == null || !n.isObject()) {
        throw new IllegalArgumentException("the body is not a JSON object");
      }
      if (n.path("quantity").asLong(0) <= 0) {
        throw new IllegalArgumentException("invalid quantity");
      }
      if (n.path("product_name").asText("").trim().isEmpty()) {
        throw new IllegalArgumentException("invalid product_name");
      }
      for (String field : new String[] {"order_id", "cart_id", "user_id", "currency", "subtotal"}) {
        if (n.path(field).asText("").isEmpty()) {
          throw new IllegalArgumentException("invalid " + field);
        }
      }
      return new Line(
          n.get("order_id").asText(),
          n.get("cart_id").asText(),
          n.get("user_id").asText(),
          n.get("currency").asText(),
          JSON.writeValueAsBytes(n));
    }
  }

  /**
   * Reads the events topic and indexes one document per line (its order id as the document id,
   * so a redelivered event overwrites, never duplicates); offsets committed after each bulk.
   */
  static final class Projector implements Runnable {
    final String kafka;
    final String topic;
    final String group;
    final String opensearch;
    final String index;
    final HttpClient http = HttpClient.newHttpClient();

    Projector(String kafka, String topic, String group, String opensearch, String index) {
      this.kafka = kafka;
      this.topic = topic;
      this.group = group;
      this.opensearch = opensearch;
      this.index = index;
    }

    /** One shard, no replica, as salestrack-bench gives the runner's indices. */
    void createIndex() throws Exception {
      String settings = "{\"settings\":{\"number_of_shards\":1,\"number_of_replicas\":0}}";
      var response =
          http.send(
              java.net.http.HttpRequest.newBuilder(URI.create(opensearch + "/" + index))
                  .header("Content-Type", "application/json")
                  .PUT(BodyPublishers.ofString(settings))
                  .build(),
              BodyHandlers.ofString());
      if (response.statusCode() != 200) {
        throw new IllegalStateException("creating " + index + ": " + response.body());
      }
    }

    /** The lines the index holds, after a refresh. */
    CompletableFuture<Long> count() {
      var refresh =
          java.net.http.HttpRequest.newBuilder(URI.create(opensearch + "/" + index + "/_refresh"))
              .POST(BodyPublishers.noBody())
              .build();
      var count =
          java.net.http.HttpRequest.newBuilder(URI.create(opensearch + "/" + index + "/_count")).build();
      return http.sendAsync(refresh, BodyHandlers.discarding())
          .thenCompose(r -> http.sendAsync(count, BodyHandlers.ofString()))
          .thenApply(
              r -> {
                try {
                  return JSON.readTree(r.body()).get("count").asLong();
                } catch (Exception e) {
                  throw new IllegalStateException("counting: " + r.body(), e);
                }
              });
    }

    @Override
    public void run() {
      Properties p = new Properties();
      p.put("bootstrap.servers", kafka);
      p.put("group.id", group);
      p.put("enable.auto.commit", "false");
      p.put("auto.offset.reset", "earliest");
      p.put("max.poll.records", "500");
      p.put("key.deserializer", StringDeserializer.class.getName());
      p.put("value.deserializer", ByteArrayDeserializer.class.getName());
      try (KafkaConsumer<String, byte[]> consumer = new KafkaConsumer<>(p)) {
        consumer.subscribe(List.of(topic));
        while (true) {
          ConsumerRecords<String, byte[]> records = consumer.poll(Duration.ofMillis(100));
          if (records.isEmpty()) {
            continue;
          }
          StringBuilder bulk = new StringBuilder();
          for (ConsumerRecord<String, byte[]> r : records) {
            String id = new String(r.headers().lastHeader(ORDER_ID).value(), StandardCharsets.UTF_8);
            bulk.append("{\"index\":{\"_index\":\"").append(index).append("\",\"_id\":\"");
            bulk.append(id).append("\"}}\n");
            bulk.append(new String(r.value(), StandardCharsets.UTF_8)).append('\n');
          }
          bulkUntilDone(bulk.toString());
          consumer.commitSync();
        }
      } catch (Exception e) {
        System.err.println("projector stopped: " + e);
        e.printStackTrace();
      }
    }

    /** Retried until OpenSearch takes every document: a batch is never skipped. */
    void bulkUntilDone(String body) throws InterruptedException {
      var request =
          java.net.http.HttpRequest.newBuilder(URI.create(opensearch + "/_bulk"))
              .header("Content-Type", "application/x-ndjson")
              .POST(BodyPublishers.ofString(body, StandardCharsets.UTF_8))
              .build();
      while (true) {
        try {
          var response = http.send(request, BodyHandlers.ofString());
          if (response.statusCode() == 200
              && !JSON.readTree(response.body()).path("errors").asBoolean(true)) {
            return;
          }
          System.err.println("bulk failed, retrying: " + response.statusCode());
        } catch (java.io.IOException e) {
          System.err.println("bulk failed, retrying: " + e);
        }
        Thread.sleep(200);
      }
    }
  }
}
