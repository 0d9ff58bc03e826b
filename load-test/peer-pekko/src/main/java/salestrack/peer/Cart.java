package salestrack.peer;

import java.nio.charset.StandardCharsets;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.cluster.sharding.typed.javadsl.EntityTypeKey;
import org.apache.pekko.persistence.typed.PersistenceId;
import org.apache.pekko.persistence.typed.javadsl.CommandHandler;
import org.apache.pekko.persistence.typed.javadsl.Effect;
import org.apache.pekko.persistence.typed.javadsl.EventHandler;
import org.apache.pekko.persistence.typed.javadsl.EventSourcedBehavior;

/**
 * A cart: one user and one currency, a repeated line is a no-op (the rules the PostgreSQL peer
 * applies). A placed line is persisted to the journal, then published to Kafka keyed by cart;
 * the reply waits for Kafka's acknowledgement, so a 202 means the event is in both.
 */
final class Cart extends EventSourcedBehavior<Cart.Place, Cart.Placed, Cart.State> {
  static final EntityTypeKey<Place> KEY = EntityTypeKey.create(Place.class, "cart");

  /** The only command: place a line; answered with {@link Reply}. */
  static final class Place {
    final PekkoPeer.Line line;
    final ActorRef<Reply> replyTo;

    Place(PekkoPeer.Line line, ActorRef<Reply> replyTo) {
      this.line = line;
      this.replyTo = replyTo;
    }
  }

  /** {@code error} is null when the line was placed (or had been). */
  static final class Reply {
    static final Reply OK = new Reply(null);
    final String error;

    Reply(String error) {
      this.error = error;
    }
  }

  /** The only event: serialized as the line's JSON by {@link EventSerializer}. */
  static final class Placed {
    final PekkoPeer.Line line;

    Placed(PekkoPeer.Line line) {
      this.line = line;
    }
  }

  static final class State {
    String userId;
    String currency;
    final java.util.HashSet<String> orderIds = new java.util.HashSet<>();

    State apply(Placed e) {
      if (userId == null) {
        userId = e.line.userId;
        currency = e.line.currency;
      }
      orderIds.add(e.line.orderId);
      return this;
    }
  }

  private final String cartId;
  private final KafkaProducer<String, byte[]> producer;
  private final String topic;

  private Cart(String cartId, KafkaProducer<String, byte[]> producer, String topic) {
    super(PersistenceId.of("cart", cartId));
    this.cartId = cartId;
    this.producer = producer;
    this.topic = topic;
  }

  static Cart create(String cartId, KafkaProducer<String, byte[]> producer, String topic) {
    return new Cart(cartId, producer, topic);
  }

  @Override
  public State emptyState() {
    return new State();
  }

  @Override
  public CommandHandler<Place, Placed, State> commandHandler() {
    return newCommandHandlerBuilder().forAnyState().onCommand(Place.class, this::place).build();
  }

  private Effect<Placed, State> place(State state, Place c) {
    PekkoPeer.Line line = c.line;
    if (state.orderIds.contains(line.orderId)) {
      return Effect().none().thenRun(s -> c.replyTo.tell(Reply.OK));
    }
    if (state.userId != null && !state.userId.equals(line.userId)) {
      return Effect().none().thenRun(s -> c.replyTo.tell(new Reply("the cart belongs to another user")));
    }
    if (state.currency != null && !state.currency.equals(line.currency)) {
      return Effect().none().thenRun(s -> c.replyTo.tell(new Reply("the cart has another currency")));
    }
    return Effect()
        .persist(new Placed(line))
        .thenRun(
            s ->
                producer.send(
                    published(line),
                    (metadata, error) ->
                        c.replyTo.tell(error == null ? Reply.OK : new Reply(error.toString()))));
  }

  /** The line on the events topic, keyed by cart, its order id in a header. */
  private ProducerRecord<String, byte[]> published(PekkoPeer.Line line) {
    ProducerRecord<String, byte[]> record = new ProducerRecord<>(topic, cartId, line.json);
    record.headers().add(PekkoPeer.ORDER_ID, line.orderId.getBytes(StandardCharsets.UTF_8));
    return record;
  }

  @Override
  public EventHandler<State, Placed> eventHandler() {
    return newEventHandlerBuilder().forAnyState().onEvent(Placed.class, State::apply).build();
  }
}
