// Session settings through transaction pooling with PgJDBC in its default
// mode (statements server-prepared after prepareThreshold = 5 runs, so a
// repeated SET runs as a named prepared statement), autocommit off: SET
// inside transactions that commit or roll back, savepoints, set_config.
// Several connections with different settings interleave on few servers;
// each checks its settings after every transaction.
// Usage: java -cp postgresql.jar JdbcSettings.java JDBC_URL  (prints OK)
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Savepoint;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

public class JdbcSettings {
    static final String[] ZONES = {"Asia/Tokyo", "Europe/Paris", "America/New_York", "Africa/Cairo"};
    static final AtomicInteger checks = new AtomicInteger();

    static void check(Statement st, String who, String tz, String tenant) throws Exception {
        try (ResultSet rs = st.executeQuery(
                "SELECT current_setting('TimeZone'), coalesce(current_setting('app.tenant', true), '')")) {
            rs.next();
            if ((tz != null && !tz.equals(rs.getString(1))) || !tenant.equals(rs.getString(2))) {
                throw new AssertionError(who + ": got " + rs.getString(1) + "/" + rs.getString(2)
                        + ", expected " + tz + "/" + tenant);
            }
        }
        checks.incrementAndGet();
    }

    static void client(String url, int i) throws Exception {
        String who = "jdbc " + i;
        try (Connection conn = DriverManager.getConnection(url)) {
            conn.setAutoCommit(false);
            Statement st = conn.createStatement();
            String tz = null;
            String tenant = "";
            for (int r = 0; r < 40; r++) {
                String zone = ZONES[(i + r) % ZONES.length];
                switch (r % 4) {
                    case 0:
                        st.execute("SET TimeZone = '" + zone + "'");
                        conn.commit();
                        tz = zone;
                        break;
                    case 1:
                        st.execute("SET TimeZone = 'America/Sao_Paulo'");
                        conn.rollback();
                        break;
                    case 2: {
                        st.execute("SELECT 1");
                        Savepoint sp = conn.setSavepoint();
                        st.execute("SET TimeZone = 'Asia/Kolkata'");
                        conn.rollback(sp);
                        try (PreparedStatement ps =
                                conn.prepareStatement("SELECT set_config('app.tenant', ?, false)")) {
                            ps.setString(1, "j" + i);
                            ps.execute();
                        }
                        conn.commit();
                        tenant = "j" + i;
                        break;
                    }
                    default:
                        // The same text every time: server-prepared after five.
                        st.execute("SET app.tenant = 'same" + i + "'");
                        conn.commit();
                        tenant = "same" + i;
                }
                check(st, who + " round " + r, tz, tenant);
                conn.commit();
            }
        }
    }

    public static void main(String[] args) throws Exception {
        List<Thread> threads = new ArrayList<>();
        List<Throwable> failures = new ArrayList<>();
        for (int i = 0; i < 6; i++) {
            final int n = i;
            Thread t = new Thread(() -> {
                try {
                    client(args[0], n);
                } catch (Throwable e) {
                    synchronized (failures) {
                        failures.add(e);
                    }
                }
            });
            t.start();
            threads.add(t);
        }
        for (Thread t : threads) {
            t.join();
        }
        if (!failures.isEmpty()) {
            failures.get(0).printStackTrace();
            System.exit(1);
        }
        System.out.println("OK " + checks.get() + " checks");
    }
}
